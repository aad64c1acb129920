"""`make run`'s command: ready line; a worker killed with SIGKILL is brought back; then
Ctrl-C, even pressed twice, leaves no process behind."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bai_platform.devstack import SERVICES
from bai_platform.devstack.process import pid_alive
from bai_platform.identity import IDENTITY_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never printed {needle!r}:\n{''.join(seen)}")


class _Listener(threading.Thread):
    """Holds a live-event stream open straight at the gateway and notes when it ends."""

    def __init__(self, gateway: str, identity: str) -> None:
        super().__init__(daemon=True)
        self.gateway, self.identity = gateway, identity
        self.ended_at = float("inf")

    def run(self) -> None:
        headers = {IDENTITY_HEADER: self.identity}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET",
                f"{self.gateway}/v1/events",
                headers=headers,
                timeout=httpx.Timeout(5.0, read=None),
            ) as response,
        ):
            for _ in response.iter_lines():
                pass
        self.ended_at = time.monotonic()


def _live_listener(output: str) -> _Listener:
    edge = re.search(r"BAI ready: (\S+)", output)
    gateway = re.search(r"gateway api \(direct\)\s+(\S+)", output)
    assert edge, output
    assert gateway, output
    signup = httpx.post(
        f"{edge[1]}/v1/auth/signup",
        timeout=10,
        json={
            "email": "live@example.com",
            "password": "correct horse battery",
            "workspace": "Live",
        },
    )
    token = signup.json()["access_token"]
    verified = httpx.get(
        f"{gateway[1]}/auth/verify", timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    listener = _Listener(gateway[1], verified.headers[IDENTITY_HEADER])
    listener.start()
    time.sleep(0.5)  # the stream is open
    return listener


def _recorded_pids(state: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in (state / "run").glob("*.pid")]


def _pid_of(state: Path, name: str) -> int:
    return int((state / "run" / f"{name}.pid").read_text().split()[0])


def _kill_and_see_it_back(up: subprocess.Popen[str], state: Path, name: str) -> int:
    """SIGKILL ``name``; the supervisor says it restarted it, and the new one is running."""
    crashed = _pid_of(state, name)
    log = state / "logs" / f"{name}.log"
    started_before = log.read_text().count("worker_started")
    os.kill(crashed, signal.SIGKILL)
    said = _wait_for_line(up, f"restarted  {name}", timeout=30)
    assert "killed by signal 9" in said[-1]
    deadline = time.monotonic() + 60
    while log.read_text().count("worker_started") == started_before:
        assert time.monotonic() < deadline, "the restarted worker never started"
        time.sleep(0.2)
    restarted = _pid_of(state, name)
    assert restarted != crashed
    return restarted


def _rest_of_output(up: "subprocess.Popen[str]", *, timeout: float) -> str:
    """What ``up`` says until it exits; fails with it if that takes longer than ``timeout``."""
    try:
        rest, _ = up.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        up.kill()
        rest, _ = up.communicate()
        pytest.fail(f"the stack's stop took more than {timeout} s; it said:\n{rest}")
    return rest


def _env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BAI_STATE_DIR": str(state),
        "BAI_FREE_PORTS": "true",
        "PYTHONUNBUFFERED": "1",
    }


def _stack_up(state: Path) -> "subprocess.Popen[str]":
    """``bai-stack up`` (what ``make run`` runs) on free ports, its output readable; started
    with SIGINT ignored, as a shell starts a command put in the background, so Ctrl-C must
    work however it was started."""
    return subprocess.Popen(
        [sys.executable, "-m", "bai_platform.devstack", "up"],
        env=_env(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,  # only a signal disposition in the child
    )


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_stops_every_process_it_started(state_dir: Path) -> None:
    state = state_dir
    with _stack_up(state) as up:
        try:
            lines = _wait_for_line(up, "gateway api (direct)", timeout=180)
            pids = _recorded_pids(state)
            assert len(pids) == 13  # postgres, nats, traefik, 5 apis, 5 workers
            pids.append(_kill_and_see_it_back(up, state, "planner-worker"))
            listener = _live_listener("".join(lines))
            interrupted_at = time.monotonic()
            up.send_signal(signal.SIGINT)
            time.sleep(0.3)
            up.send_signal(signal.SIGINT)  # impatient: must not cut the stop short
            said_at_stop = _rest_of_output(up, timeout=90)
            assert up.returncode == 0, said_at_stop
            listener.join(30)
        finally:
            if up.poll() is None:
                up.kill()
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert any("ok  postgres" in line for line in lines)
    logs = state / "logs"
    # An open live-event stream ended with the drain, not after the graceful timeout.
    assert listener.ended_at - interrupted_at < 10
    assert "graceful shutdown exceeded" not in (logs / "gateway-api.log").read_text()
    for service in SERVICES:  # each drained and closed, not killed
        assert "worker_stopped" in (logs / f"{service}-worker.log").read_text()
        assert "Application shutdown complete" in (logs / f"{service}-api.log").read_text()


def test_down_stops_a_running_stack_for_good(state_dir: Path) -> None:
    """``make down`` from another terminal: the supervisor stops everything it started (its
    watchdog must not bring them back) and exits as after Ctrl-C."""
    with _stack_up(state_dir) as up:
        try:
            _wait_for_line(up, "gateway api (direct)", timeout=180)
            pids = [*_recorded_pids(state_dir), up.pid]
            down = subprocess.run(
                [sys.executable, "-m", "bai_platform.devstack", "down"],
                env=_env(state_dir),
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            said_at_stop = _rest_of_output(up, timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
    assert "stopped the stack running from" in down.stdout, down.stdout
    assert up.returncode == 0, said_at_stop
    assert "restarted  " not in said_at_stop  # no "restarted  <process>" report
    assert said_at_stop.rstrip().endswith("Stopped."), said_at_stop
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not (state_dir / "supervisor.pid").exists()
