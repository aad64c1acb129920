"""`make run`'s command: ready line, then Ctrl-C leaves no process behind."""

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
            lines = _wait_for_line(up, "gateway api (direct)", timeout=180)
            pids = _recorded_pids(state)
            assert len(pids) == 13  # postgres, nats, traefik, 5 apis, 5 workers
            listener = _live_listener("".join(lines))
            interrupted_at = time.monotonic()
            up.send_signal(signal.SIGINT)
            assert up.wait(60) == 0
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
