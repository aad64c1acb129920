"""The supervisor's promises that do not need the whole stack running."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bai_platform.devstack import PortInUse, Stack, StackSettings
from bai_platform.devstack.process import cmdline, pid_alive, recover_stale
from bai_platform.devstack.traefik import render


def test_taken_port_is_named_with_the_setting_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(StackSettings(state_dir=tmp_path, nats_port=port))
        with pytest.raises(PortInUse) as caught:
            stack.start(only=["nats"])
    assert caught.value.port == port
    assert "BAI_NATS_PORT" in str(caught.value)
    stack.stop()


def _sleeper() -> subprocess.Popen[bytes]:
    """A process that is fully running, as one left by an earlier run would be."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    deadline = time.monotonic() + 5
    while "time.sleep" not in cmdline(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # /proc/<pid>/cmdline can read empty just after exec
    return process


def test_process_left_by_a_crashed_run_is_stopped(tmp_path: Path) -> None:
    orphan = _sleeper()
    pid_file = tmp_path / "orphan.pid"
    pid_file.write_text(f"{orphan.pid}\n{sys.executable} -c import time; time.sleep(60)\n")
    assert recover_stale(pid_file, timeout=5)
    orphan.wait(5)
    assert not pid_alive(orphan.pid)
    assert not pid_file.exists()


def test_stale_pid_of_an_unrelated_process_is_left_alone(tmp_path: Path) -> None:
    bystander = _sleeper()
    pid_file = tmp_path / "nats.pid"
    pid_file.write_text(f"{bystander.pid}\n/some/other/nats-server -p 4222\n")
    try:
        assert not recover_stale(pid_file, timeout=5)
        assert pid_alive(bystander.pid)
        assert not pid_file.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_traefik_config_is_rendered_with_the_stacks_ports(tmp_path: Path) -> None:
    urls = {
        name: f"http://127.0.0.1:{9000 + i}"
        for i, name in enumerate(("gateway", "planner", "creator", "mining", "billing"))
    }
    static = render(
        out_dir=tmp_path, host="127.0.0.1", edge_port=18080, service_urls=urls, log_dir=tmp_path
    )
    assert 'address: "127.0.0.1:18080"' in static.read_text()
    dynamic = yaml.safe_load((tmp_path / "dynamic.yml").read_text())
    auth = dynamic["http"]["middlewares"]["forward-auth"]["forwardAuth"]
    assert auth["address"] == "http://127.0.0.1:9000/auth/verify"
    assert "trustedIPs: []" in static.read_text()  # no client picks its own address


def test_traefik_keeps_forwarded_headers_only_from_the_proxies_named(tmp_path: Path) -> None:
    services = ("gateway", "planner", "creator", "mining", "billing")
    urls = dict.fromkeys(services, "http://127.0.0.1:9000")
    static = render(
        out_dir=tmp_path,
        host="127.0.0.1",
        edge_port=18080,
        service_urls=urls,
        log_dir=tmp_path,
        trusted_ips=["10.0.0.0/8", "192.0.2.7"],
    )
    assert 'trustedIPs: ["10.0.0.0/8", "192.0.2.7"]' in static.read_text()


def test_stale_postmaster_pid_whose_pid_was_reused_is_recovered(state_dir: Path) -> None:
    scratch = Stack(StackSettings(state_dir=state_dir, free_ports=True))
    scratch.start(only=["postgres"])
    assert scratch.postgres is not None
    pid_file = scratch.postgres.data / "postmaster.pid"
    left_behind = pid_file.read_text()
    scratch.stop()
    bystander = _sleeper()  # the crashed server's pid now belongs to someone else
    pid_file.write_text(left_behind.replace(left_behind.split()[0], str(bystander.pid), 1))
    try:
        scratch.start(only=["postgres"])
        assert pid_file.read_text().split()[0] != str(bystander.pid)
        assert pid_alive(bystander.pid)
    finally:
        scratch.stop()
        bystander.kill()
        bystander.wait()
