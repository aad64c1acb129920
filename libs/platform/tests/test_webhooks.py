"""Signed webhooks: the signature both ways, and the dispatcher against a real HTTP server.

The server is uvicorn on a socket this module binds (127.0.0.1, port 0); it records every
request it gets and answers by path, so tests can count what reached it.
"""

import asyncio
import hmac
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bai_platform.webhooks import (
    CircuitOpen,
    Delivered,
    DispatchFailed,
    SignatureError,
    WebhookDispatcher,
    backoff_delay,
    sign,
    verify_secret_header,
    verify_signature,
)
from bai_testing.servers import served

SECRET = "tenant-workflow-signing-secret"
BIG_BODY_BYTES = 5 * 1024 * 1024


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What reached the server, and what ``/flaky`` answers next."""

    requests: list[Received] = field(default_factory=list)
    flaky_status: int = 500

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)


def _app(receiver: Receiver) -> Starlette:
    async def record(request: Request) -> Received:
        received = Received(request.url.path, dict(request.headers), await request.body())
        receiver.requests.append(received)
        return received

    async def ok(request: Request) -> Response:
        await record(request)
        return JSONResponse({"accepted": True})

    async def status(request: Request) -> Response:
        await record(request)
        code = int(request.path_params["code"])
        return PlainTextResponse("  bad\n\n input   here ", status_code=code)

    async def crash(request: Request) -> Response:
        await record(request)
        return JSONResponse({"message": "workflow crashed", "hint": "x"}, status_code=500)

    async def redirect(request: Request) -> Response:
        await record(request)
        return Response(status_code=302, headers={"Location": "/ok?token=redirect-secret"})

    async def big(request: Request) -> Response:
        await record(request)
        chunk = b"x" * 65536

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(BIG_BODY_BYTES // len(chunk)):
                yield chunk

        return StreamingResponse(chunks(), media_type="text/plain")

    async def slow(request: Request) -> Response:
        await record(request)
        await asyncio.sleep(float(request.query_params.get("seconds", "1")))
        return JSONResponse({"accepted": True})

    async def flaky(request: Request) -> Response:
        await record(request)
        return JSONResponse({"error": "flaky"}, status_code=receiver.flaky_status)

    routes = [
        Route("/ok", ok, methods=["POST"]),
        Route("/status/{code:int}", status, methods=["POST"]),
        Route("/crash", crash, methods=["POST"]),
        Route("/redirect", redirect, methods=["POST"]),
        Route("/big", big, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
        Route("/flaky", flaky, methods=["POST"]),
    ]
    return Starlette(routes=routes)


@dataclass
class Site:
    base: str
    receiver: Receiver


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[str, Receiver]]:
    receiver = Receiver()
    async with served(_app(receiver)) as base:
        yield base, receiver


@pytest.fixture
def site(server: tuple[str, Receiver]) -> Site:
    base, receiver = server
    receiver.requests.clear()
    receiver.flaky_status = 500
    return Site(base, receiver)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _failure(dispatcher: WebhookDispatcher, url: str, **kwargs: Any) -> DispatchFailed:
    with pytest.raises(DispatchFailed) as caught:
        await dispatcher.dispatch(url=url, payload={"job": "gen_1"}, secret=SECRET, **kwargs)
    return caught.value


# --- signatures --------------------------------------------------------------------------


def test_a_signature_verifies_on_the_same_raw_body() -> None:
    body, now = b'{"b":1,"a":"\xc3\xa9"}', 1_796_000_000
    signature = sign(SECRET, now, body)
    assert signature.startswith("v1=")
    verify_signature(secret=SECRET, timestamp=str(now), signature=signature, body=body, now=now)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(
            secret=SECRET, timestamp=str(now), signature=signature, body=body + b" ", now=now
        )


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_refused_both_ways(skew: int) -> None:
    stamp = 1_796_000_000
    signature = sign(SECRET, stamp, b"{}")
    with pytest.raises(SignatureError, match="within 300 s"):
        verify_signature(
            secret=SECRET, timestamp=str(stamp), signature=signature, body=b"{}", now=stamp + skew
        )


def test_any_of_several_v1_values_is_enough_and_only_v1_counts() -> None:
    stamp, body = 1_796_000_000, b"{}"
    good = sign(SECRET, stamp, body)
    old = sign("the-previous-secret", stamp, body)
    rolled = f"{old}, {good}"
    verify_signature(secret=SECRET, timestamp=str(stamp), signature=rolled, body=body, now=stamp)
    with pytest.raises(SignatureError):
        verify_signature(
            secret=SECRET, timestamp=str(stamp), signature="v0" + good[2:], body=body, now=stamp
        )


@pytest.mark.parametrize(
    ("secret", "timestamp", "signature", "reason"),
    [
        ("", "1796000000", "v1=00", "no signing secret"),
        (SECRET, None, "v1=00", "required"),
        (SECRET, "1796000000", None, "required"),
        (SECRET, "-1796000000", "v1=00", "within"),
    ],
)
def test_missing_parts_are_refused(
    secret: str, timestamp: str | None, signature: str | None, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_signature(
            secret=secret, timestamp=timestamp, signature=signature, body=b"", now=1_796_000_000
        )


def test_signatures_and_secrets_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module webhooks uses
    stamp = 1_796_000_000
    signature = sign(SECRET, stamp, b"{}")
    verify_signature(
        secret=SECRET, timestamp=str(stamp), signature=signature, body=b"{}", now=stamp
    )
    verify_secret_header(secret=SECRET, presented=SECRET)
    digest, secret = signature[3:].encode(), SECRET.encode()
    assert compared == [(digest, digest), (secret, secret)]


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        ("²", "v1=00"),  # str.isdigit() says yes, int() says no
        ("179600000²", "v1=00"),
        ("١٧٩٦٠٠٠٠٠٠", "v1=00"),  # Arabic-Indic digits: int() reads them
        ("9" * 5000, "v1=00"),  # beyond int()'s 4,300 digits
        ("1796000000", "v1=é" + "0" * 63),  # compare_digest refuses non-ASCII str
        ("1796000000", "v1=\xff,v1=00"),
    ],
)
def test_odd_characters_in_the_headers_are_a_signature_error(
    timestamp: str, signature: str
) -> None:
    with pytest.raises(SignatureError):
        verify_signature(
            secret=SECRET, timestamp=timestamp, signature=signature, body=b"", now=1_796_000_000
        )


def test_an_odd_shared_secret_header_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="X-BAI-Secret"):
        verify_secret_header(secret=SECRET, presented=SECRET + "é")


@pytest.mark.parametrize("presented", [None, "", "nope"])
def test_the_shared_secret_header_must_match(presented: str | None) -> None:
    verify_secret_header(secret=SECRET, presented=SECRET)
    with pytest.raises(SignatureError, match="X-BAI-Secret"):
        verify_secret_header(secret=SECRET, presented=presented)
    with pytest.raises(SignatureError):
        verify_secret_header(secret="", presented="")


# --- what goes out -----------------------------------------------------------------------


async def test_the_receiver_can_verify_what_it_got(site: Site, client: httpx.AsyncClient) -> None:
    dispatcher = WebhookDispatcher(client=client, allow_private=True)
    payload = {"job_id": "gen_abc", "title": "Café", "n": 2}
    delivered = await dispatcher.dispatch(
        url=f"{site.base}/ok", payload=payload, secret=SECRET, event_id="evt_123"
    )
    assert delivered == Delivered(status_code=200, body=b'{"accepted":true}')
    (got,) = site.receiver.requests
    assert json.loads(got.body) == payload
    assert got.body == '{"job_id":"gen_abc","n":2,"title":"Café"}'.encode()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "BAI-Webhooks/1"
    assert got.headers["x-bai-event-id"] == "evt_123"
    assert "x-bai-secret" not in got.headers
    assert abs(int(got.headers["x-bai-timestamp"]) - time.time()) < 5
    verify_signature(
        secret=SECRET,
        timestamp=got.headers["x-bai-timestamp"],
        signature=got.headers["x-bai-signature"],
        body=got.body,
        now=time.time(),
    )


async def test_the_shared_secret_header_and_event_id_only_when_asked(
    site: Site, client: httpx.AsyncClient
) -> None:
    dispatcher = WebhookDispatcher(client=client, allow_private=True)
    await dispatcher.dispatch(url=f"{site.base}/ok", payload={}, secret=SECRET, secret_header=True)
    (got,) = site.receiver.requests
    assert got.headers["x-bai-secret"] == SECRET
    assert "x-bai-event-id" not in got.headers
    assert "x-bai-signature" in got.headers  # signed all the same


async def test_an_empty_secret_sends_nothing(site: Site, client: httpx.AsyncClient) -> None:
    dispatcher = WebhookDispatcher(client=client, allow_private=True)
    with pytest.raises(DispatchFailed) as caught:
        await dispatcher.dispatch(url=f"{site.base}/ok", payload={}, secret="")
    assert not caught.value.retryable
    assert site.receiver.requests == []


async def test_a_url_that_is_not_http_is_refused(client: httpx.AsyncClient) -> None:
    dispatcher = WebhookDispatcher(client=client, allow_private=True)
    for url in ("ftp://example.com/hook", "not a url", "http:///nohost"):
        failure = await _failure(dispatcher, url)
        assert not failure.retryable


# --- what comes back ---------------------------------------------------------------------


async def test_a_5xx_is_retryable_with_the_workflows_own_message(
    site: Site, client: httpx.AsyncClient
) -> None:
    failure = await _failure(
        WebhookDispatcher(client=client, allow_private=True), f"{site.base}/crash"
    )
    assert failure.retryable
    assert failure.status_code == 500
    assert failure.message == "n8n answered 500: workflow crashed"


@pytest.mark.parametrize(
    ("code", "retryable"), [(400, False), (404, False), (408, True), (429, True), (503, True)]
)
async def test_which_statuses_are_worth_retrying(
    site: Site, client: httpx.AsyncClient, code: int, retryable: bool
) -> None:
    failure = await _failure(
        WebhookDispatcher(client=client, allow_private=True), f"{site.base}/status/{code}"
    )
    assert failure.retryable is retryable
    assert failure.status_code == code
    assert failure.message == f"n8n answered {code}: bad input here"


async def test_a_redirect_is_not_followed(site: Site, client: httpx.AsyncClient) -> None:
    failure = await _failure(
        WebhookDispatcher(client=client, allow_private=True), f"{site.base}/redirect"
    )
    assert not failure.retryable
    assert failure.status_code == 302
    assert f"redirect to {site.base}/ok" in failure.message
    assert "redirect-secret" not in failure.message
    assert [r.path for r in site.receiver.requests] == ["/redirect"]


async def test_a_huge_answer_is_cut_at_the_cap(site: Site, client: httpx.AsyncClient) -> None:
    delivered = await WebhookDispatcher(client=client, allow_private=True).dispatch(
        url=f"{site.base}/big", payload={}, secret=SECRET
    )
    assert len(delivered.body) == 64 * 1024
    small = WebhookDispatcher(client=client, allow_private=True, max_response_bytes=1000)
    delivered = await small.dispatch(url=f"{site.base}/big", payload={}, secret=SECRET)
    assert delivered.body == b"x" * 1000


async def test_a_refused_connection_is_retryable_and_tells_no_secrets(
    client: httpx.AsyncClient,
) -> None:
    port = _closed_port()
    url = f"http://user:pw-secret@127.0.0.1:{port}/hook?token=abc"
    failure = await _failure(WebhookDispatcher(client=client, allow_private=True), url)
    assert failure.retryable
    assert failure.status_code is None
    assert failure.message.startswith(f"could not reach http://127.0.0.1:{port}: ")
    for secret in ("token", "abc", "pw-secret", "user", "/hook"):
        assert secret not in failure.message


async def test_a_slow_workflow_times_out_retryably(site: Site, client: httpx.AsyncClient) -> None:
    dispatcher = WebhookDispatcher(client=client, allow_private=True, timeout_seconds=0.3)
    started = time.monotonic()
    failure = await _failure(dispatcher, f"{site.base}/slow?seconds=1")
    assert time.monotonic() - started < 0.9
    assert failure.retryable
    assert failure.message == f"could not reach {site.base}: no answer within 0.3 s"


async def test_a_dripping_workflow_is_cut_at_the_overall_deadline(
    dripping: str, client: httpx.AsyncClient
) -> None:
    dispatcher = WebhookDispatcher(client=client, allow_private=True, timeout_seconds=1)
    async with asyncio.timeout(20):  # a failure of the test, not a hang
        failure = await _failure(dispatcher, dripping)
    assert failure.retryable
    assert failure.message.endswith("no answer within 1 s")


async def test_a_name_that_takes_for_ever_to_resolve_is_cut_at_the_overall_deadline(
    client: httpx.AsyncClient,
) -> None:
    # The tenant runs the name server for its own domain: resolving is a call it controls.
    async def stalling(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return ["93.184.215.14"]

    dispatcher = WebhookDispatcher(client=client, resolver=stalling, timeout_seconds=1)
    async with asyncio.timeout(20):
        failure = await _failure(dispatcher, "https://n8n.example.com/webhook")
    assert failure.retryable
    assert "within 1 s" in failure.message


# --- circuit breaker ---------------------------------------------------------------------


async def test_the_breaker_opens_after_the_threshold_and_lets_one_trial_through(
    site: Site, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(
        client=client, allow_private=True, failure_threshold=3, open_seconds=30, clock=clock
    )
    url = f"{site.base}/flaky"
    for _ in range(3):
        assert not isinstance(await _failure(dispatcher, url), CircuitOpen)
    opened = await _failure(dispatcher, url)
    assert isinstance(opened, CircuitOpen)
    assert opened.retryable
    assert opened.retry_after_seconds == 30
    assert site.receiver.hits("/flaky") == 3
    # Another path on the same host:port is the same endpoint.
    assert isinstance(await _failure(dispatcher, f"{site.base}/ok"), CircuitOpen)

    clock.now += 29.9
    assert isinstance(await _failure(dispatcher, url), CircuitOpen)
    clock.now += 0.2
    site.receiver.flaky_status = 200
    await dispatcher.dispatch(url=url, payload={}, secret=SECRET)
    await dispatcher.dispatch(url=url, payload={}, secret=SECRET)  # closed again
    assert site.receiver.hits("/flaky") == 5


async def test_a_failed_trial_opens_the_breaker_again(
    site: Site, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(
        client=client, allow_private=True, failure_threshold=2, open_seconds=10, clock=clock
    )
    url = f"{site.base}/flaky"
    for _ in range(2):
        await _failure(dispatcher, url)
    clock.now += 11
    trial = await _failure(dispatcher, url)
    assert not isinstance(trial, CircuitOpen)
    assert trial.status_code == 500
    assert isinstance(await _failure(dispatcher, url), CircuitOpen)
    clock.now += 11
    site.receiver.flaky_status = 200
    await dispatcher.dispatch(url=url, payload={}, secret=SECRET)
    assert site.receiver.hits("/flaky") == 4


async def test_only_one_trial_goes_while_half_open(site: Site, client: httpx.AsyncClient) -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(
        client=client, allow_private=True, failure_threshold=1, open_seconds=5, clock=clock
    )
    await _failure(dispatcher, f"{site.base}/flaky")
    clock.now += 6
    trial = asyncio.create_task(
        dispatcher.dispatch(url=f"{site.base}/slow?seconds=0.2", payload={}, secret=SECRET)
    )
    while site.receiver.hits("/slow") == 0:
        await asyncio.sleep(0.01)
    assert isinstance(await _failure(dispatcher, f"{site.base}/ok"), CircuitOpen)
    assert (await trial).status_code == 200
    await dispatcher.dispatch(url=f"{site.base}/ok", payload={}, secret=SECRET)


async def test_client_errors_never_open_the_breaker(site: Site, client: httpx.AsyncClient) -> None:
    dispatcher = WebhookDispatcher(
        client=client, allow_private=True, failure_threshold=3, clock=FakeClock()
    )
    site.receiver.flaky_status = 500
    for _ in range(2):
        await _failure(dispatcher, f"{site.base}/flaky")
    for _ in range(10):
        assert not (await _failure(dispatcher, f"{site.base}/status/400")).retryable
    # The 4xx answers proved the endpoint alive: the two 5xx no longer count.
    for _ in range(2):
        assert not isinstance(await _failure(dispatcher, f"{site.base}/flaky"), CircuitOpen)
    assert site.receiver.hits("/status/400") == 10
    assert site.receiver.hits("/flaky") == 4


async def test_unreachable_endpoints_open_their_own_breaker(
    site: Site, client: httpx.AsyncClient
) -> None:
    dispatcher = WebhookDispatcher(
        client=client, allow_private=True, failure_threshold=2, clock=FakeClock()
    )
    dead = f"http://127.0.0.1:{_closed_port()}/hook"
    for _ in range(2):
        assert not isinstance(await _failure(dispatcher, dead), CircuitOpen)
    assert isinstance(await _failure(dispatcher, dead), CircuitOpen)
    await dispatcher.dispatch(url=f"{site.base}/ok", payload={}, secret=SECRET)


# --- backoff -----------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_the_exponential_ceiling() -> None:
    rng = random.Random(20240601)
    for attempt in range(1, 14):
        ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
        draws = [backoff_delay(attempt, rng=rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.9  # jitter spans the range
        assert min(draws) < ceiling * 0.1


def test_backoff_is_capped_and_never_overflows() -> None:
    rng = random.Random(7)
    assert all(backoff_delay(n, cap=60.0, rng=rng) <= 60.0 for n in (7, 50, 5000))
    assert 0.0 <= backoff_delay(1, base=0.5) <= 0.5
    with pytest.raises(ValueError, match="starts at 1"):
        backoff_delay(0)


async def test_a_workflow_on_an_internal_address_is_refused_without_a_call(
    site: Site, client: httpx.AsyncClient
) -> None:
    failure = await _failure(WebhookDispatcher(client=client), f"{site.base}/ok")

    assert not failure.retryable
    assert "internal" in str(failure)
    assert site.receiver.requests == []


@dataclass
class NamedResolver:
    """Answers for made-up names, counting the questions (nothing reaches real DNS)."""

    answers: dict[str, list[str]]
    asked: list[str] = field(default_factory=list)
    error: OSError | None = None

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if self.error is not None:
            raise self.error
        return self.answers[host]


async def test_the_call_goes_to_the_checked_address_with_the_name_as_host(
    site: Site, client: httpx.AsyncClient
) -> None:
    # workflow.example has no real address: the POST reached 127.0.0.1 only because the
    # dispatcher connected to what its resolver said (once), not to a fresh lookup.
    port = httpx.URL(site.base).port
    resolver = NamedResolver({"workflow.example": ["127.0.0.2", "127.0.0.1"]})
    dispatcher = WebhookDispatcher(client=client, allow_private=True, resolver=resolver)

    delivered = await dispatcher.dispatch(
        url=f"http://workflow.example:{port}/ok", payload={"job": "gen_1"}, secret=SECRET
    )

    assert delivered.status_code == 200
    assert resolver.asked == ["workflow.example"]
    (seen,) = site.receiver.requests  # 127.0.0.2 refused the connection: the next address
    assert seen.headers["host"] == f"workflow.example:{port}"


async def test_a_name_re_pointed_inside_is_refused_before_any_call(
    site: Site, client: httpx.AsyncClient
) -> None:
    resolver = NamedResolver({"workflow.example": ["93.184.215.14", "10.0.0.7"]})
    dispatcher = WebhookDispatcher(client=client, resolver=resolver)

    failure = await _failure(dispatcher, "http://workflow.example/ok")

    assert not failure.retryable
    assert "internal" in str(failure)


async def test_a_resolver_failure_may_pass_but_a_missing_name_does_not(
    client: httpx.AsyncClient,
) -> None:
    flaky = NamedResolver({}, error=socket.gaierror(socket.EAI_AGAIN, "try again"))
    missing = NamedResolver({}, error=socket.gaierror(socket.EAI_NONAME, "no such name"))

    for resolver, retryable in ((flaky, True), (missing, False)):
        dispatcher = WebhookDispatcher(client=client, resolver=resolver)
        failure = await _failure(dispatcher, "http://workflow.example/ok")
        assert failure.retryable is retryable
        assert "cannot be resolved" in str(failure)
