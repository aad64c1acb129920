"""The shields count per client, through a real Traefik with the rendered configuration.

The review shield (burst 30, 10/s) is the one exercised: 45 quick requests empty a
client's bucket, 10 quick ones fit in a fresh one. Every backend is one stub that answers
200 (and, as the gateway would, the problem page the shield's refusals are replaced by),
so what is measured is Traefik's decision alone.
"""

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bai_platform.devstack.config import SERVICES
from bai_platform.devstack.traefik import render
from bai_platform.edge import PROBLEM_PAGE_PATH
from bai_platform.errors import PROBLEM_JSON

REVIEW = "/v1/planner/review/some-link"
PAGE = PROBLEM_PAGE_PATH.format(status=429)
PROBLEM = b'{"type":"about:blank","title":"Too Many Requests","status":429,"code":"rate_limited"}'


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = self.path == PAGE
        self.send_response(200)
        if page:
            self.send_header("Content-Type", PROBLEM_JSON)
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(PROBLEM) if page else 0))
        self.end_headers()
        if page:
            self.wfile.write(PROBLEM)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"traefik did not become ready (exit {process.poll()})")


def _traefik(tmp: Path, backend: str, trusted: Sequence[str]) -> Iterator[str]:
    port = _free_port()
    urls = dict.fromkeys(SERVICES, backend)
    static = render(
        out_dir=tmp,
        host="127.0.0.1",
        edge_port=port,
        service_urls=urls,
        log_dir=tmp,
        trusted_ips=trusted,
    )
    binary = Path(sys.executable).parent / "traefik"
    log = (tmp / "traefik.log").open("wb")
    process = subprocess.Popen([str(binary), f"--configFile={static}"], stdout=log, stderr=log)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def behind_a_proxy(tmp_path: Path, backend: str) -> Iterator[str]:
    """Traefik trusting one proxy, 127.0.0.1, as BAI_EDGE_TRUSTED_IPS would name it."""
    yield from _traefik(tmp_path, backend, ["127.0.0.1/32"])


@pytest.fixture
def facing_clients(tmp_path: Path, backend: str) -> Iterator[str]:
    """Traefik as make run starts it: no proxy trusted."""
    yield from _traefik(tmp_path, backend, [])


def _statuses(
    url: str, count: int, *, source: str = "127.0.0.1", xff: str | None = None
) -> list[int]:
    headers = {"X-Forwarded-For": xff} if xff else {}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, headers=headers) as client:
        return [client.get(REVIEW).status_code for _ in range(count)]


def test_without_a_trusted_proxy_each_peer_address_has_its_own_bucket(facing_clients: str) -> None:
    assert 429 in _statuses(facing_clients, 45, source="127.0.0.2")
    # A forged X-Forwarded-For is dropped: it moves nobody into a fresh bucket.
    assert 429 in _statuses(facing_clients, 10, source="127.0.0.2", xff="198.51.100.9")
    assert _statuses(facing_clients, 10, source="127.0.0.3") == [200] * 10


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    behind_a_proxy: str,
) -> None:
    assert 429 in _statuses(behind_a_proxy, 45, xff="198.51.100.1")
    # The client put a neighbour's address first; the proxy appended the real one.
    assert 429 in _statuses(behind_a_proxy, 10, xff="198.51.100.2, 198.51.100.1")
    assert _statuses(behind_a_proxy, 10, xff="198.51.100.2") == [200] * 10


def test_a_shields_refusal_is_the_gateways_problem_page_with_its_own_status(
    facing_clients: str,
) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.4")
    with httpx.Client(base_url=facing_clients, transport=transport) as client:
        answers = [client.get(REVIEW) for _ in range(45)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused
    for answer in refused:
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert answer.headers["retry-after"] == "1"
        assert answer.content == PROBLEM
