"""`make run`'s command: ready line, then Ctrl-C leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bai_platform.devstack import SERVICES
from bai_platform.devstack.process import pid_alive

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


def _recorded_pids(state: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in (state / "run").glob("*.pid")]


def test_ctrl_c_stops_every_process_it_started(state_dir: Path) -> None:
    state = state_dir
    env = {
        **os.environ,
        "BAI_STATE_DIR": str(state),
        "BAI_FREE_PORTS": "true",
        "PYTHONUNBUFFERED": "1",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "bai_platform.devstack", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as up:
        try:
            lines = _wait_for_line(up, "BAI ready: http://127.0.0.1:", timeout=180)
            pids = _recorded_pids(state)
            assert len(pids) == 13  # postgres, nats, traefik, 5 apis, 5 workers
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0
        finally:
            if up.poll() is None:
                up.kill()
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert any("ok  postgres" in line for line in lines)
    logs = state / "logs"
    for service in SERVICES:  # each drained and closed, not killed
        assert "worker_stopped" in (logs / f"{service}-worker.log").read_text()
        assert "Application shutdown complete" in (logs / f"{service}-api.log").read_text()
