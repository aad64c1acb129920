"""n8n callbacks: routed by prefix to the owner, which verifies and records them; the
gateway answers with the owner's verdict (the owner's side: libs/platform test_callbacks)."""

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from structlog.testing import capture_logs

from bai_contracts import (
    CallbackDelivery,
    CallbackOutcome,
    CallbackVerdict,
    callback_delivery_subject,
)
from bai_platform.app_state import held
from bai_platform.devstack import Stack
from bai_platform.webhooks import sign
from gateway.state import GatewayState

from .conftest import assert_problem

SECRET = "workflow-signing-secret-of-the-tenant"
# The owner stood in for here is a test-only service (its prefix is tst_, see conftest):
# real services may answer for their own prefixes in the same session.
OWNER = "n8ntest"
PROBE = "tst_readiness_probe"


@dataclass
class Owner:
    """The owner's side of the contract, as the gateway sees it: it takes deliveries and
    answers a verdict (``outcomes`` per job; accepted by default)."""

    nc: NatsClient
    outcomes: dict[str, CallbackOutcome] = field(default_factory=dict)
    received: list[CallbackDelivery] = field(default_factory=list)
    asked: Counter[str] = field(default_factory=Counter)
    service: Service | None = None
    delay: float = 0.0  # how long each answer takes

    async def listen(self) -> None:
        """Answer on the owner's subject (again), as a started owner process does."""
        self.service = await add_service(self.nc, name="n8ntest-callbacks", version="0.1.0")
        await self.service.add_endpoint(
            name="callback", handler=self.answer, subject=callback_delivery_subject(OWNER)
        )
        await self.nc.flush()  # the server knows the responder before any request is sent
        await _answered(self.nc)

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def job(self, outcome: CallbackOutcome = "accepted") -> str:
        job_id = f"tst_{uuid4().hex}"
        self.outcomes[job_id] = outcome
        return job_id

    async def answer(self, request: Request) -> None:
        delivery = CallbackDelivery.model_validate_json(request.data)
        self.asked[delivery.job_id] += 1
        if delivery.job_id != PROBE:
            self.received.append(delivery)
        await asyncio.sleep(self.delay)
        outcome = self.outcomes.get(delivery.job_id, "unknown_job")
        verdict = CallbackVerdict(
            outcome=outcome,
            event_id=f"cb_{delivery.job_id}" if outcome == "accepted" else None,
            detail=f"the owner says {outcome}",
        )
        await request.respond(verdict.model_dump_json().encode())


@pytest.fixture
async def owner(migrated: Stack, app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[Owner]:
    nc = await nats.connect(migrated.nats_url)
    owner = Owner(nc=nc)
    await owner.listen()
    async with asyncio.timeout(10):
        while not held(app, GatewayState).callbacks.connected:
            await asyncio.sleep(0.05)
    try:
        yield owner
    finally:
        await owner.stop()
        await nc.close()


async def _answered(nc: NatsClient) -> None:
    """Wait until the stand-in owner has answered one question. A flushed subscription
    alone was not enough: the gateway's first question then met "no responders" now and
    again (2 runs in 5), so a test began before its owner could answer."""
    probe = CallbackDelivery.of(PROBE, b"{}", timestamp=None, signature=None, secret=None)
    data = probe.model_dump_json().encode()
    async with asyncio.timeout(10):
        while True:
            try:
                await nc.request(callback_delivery_subject(OWNER), data, timeout=1)
                return
            except (NoRespondersError, NatsTimeout):
                await asyncio.sleep(0.05)


def _signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = int(at if at is not None else time.time())
    return {
        "X-BAI-Timestamp": str(timestamp),
        "X-BAI-Signature": sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def _body(job_id: str, **extra: Any) -> bytes:
    return json.dumps(
        {"job_id": job_id, "status": "completed", "content": {"text": "Hello"}, **extra}
    ).encode()


async def _post(
    client: httpx.AsyncClient, job_id: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/v1/webhooks/n8n/{job_id}", content=body, headers=headers)


async def test_the_owner_gets_the_callback_as_sent_and_its_event_id_is_the_answer(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = owner.job()
    body = _body(job_id)
    headers = {**_signed(body), "X-BAI-Secret": "a shared secret"}

    response = await _post(client, job_id, body, headers)

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": True, "event_id": f"cb_{job_id}"}
    [delivery] = owner.received
    assert delivery.job_id == job_id
    assert delivery.body == body  # the raw bytes the signature covers
    assert delivery.timestamp == headers["X-BAI-Timestamp"]
    assert delivery.signature == headers["X-BAI-Signature"]
    assert delivery.secret == "a shared secret"


async def test_identical_callbacks_arriving_together_ask_the_owner_once(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    # Found by the callback storm (tests/chaos): n8n's retries of one callback each asked
    # the owner on its own, and a storm of them made the owner answer too late (503s).
    job_id = owner.job()
    owner.delay = 0.3
    body = _body(job_id)
    headers = _signed(body)

    answers = await asyncio.gather(*(_post(client, job_id, body, headers) for _ in range(20)))

    assert [a.status_code for a in answers] == [202] * 20
    assert owner.asked[job_id] == 1


async def test_different_callbacks_of_a_job_are_each_handed_over(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = owner.job()
    bodies = [_body(job_id, attempt=n) for n in range(3)]
    answers = await asyncio.gather(*(_post(client, job_id, b, _signed(b)) for b in bodies))
    assert [a.status_code for a in answers] == [202] * 3
    assert sorted(d.body for d in owner.received) == sorted(bodies)


@pytest.mark.parametrize(
    ("outcome", "status"),
    [("unknown_job", 404), ("invalid_signature", 401), ("invalid_callback", 422)],
)
async def test_the_owners_refusal_is_the_answer(
    client: httpx.AsyncClient, owner: Owner, outcome: CallbackOutcome, status: int
) -> None:
    job_id = owner.job(outcome)
    body = _body(job_id)
    problem = assert_problem(
        await _post(client, job_id, body, _signed(body)), status=status, code=outcome
    )
    assert problem["detail"] == f"the owner says {outcome}"


@pytest.mark.parametrize("job_id", ["zzz_0123456789", "gen", "no-prefix-at-all"])
async def test_a_job_no_service_owns_is_404_and_nobody_is_asked(
    client: httpx.AsyncClient, owner: Owner, job_id: str
) -> None:
    body = _body(job_id)
    assert_problem(await _post(client, job_id, body, _signed(body)), status=404, code="unknown_job")
    assert owner.received == []


async def test_a_callback_waits_for_an_owner_that_is_restarting(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    """Nobody answers the owner's subject for a moment (its process restarts): the
    callback is handed over again until the owner is back, then accepted."""
    job_id = owner.job()
    body = _body(job_id)
    await owner.stop()
    try:
        with capture_logs() as logs:
            sent = asyncio.create_task(_post(client, job_id, body, _signed(body)))
            async with asyncio.timeout(3):  # the restart's gap: the gateway finds no responders
                while not any(e["event"] == "rpc_no_responders" for e in logs):
                    await asyncio.sleep(0.01)
        assert not sent.done(), (await sent).text
    finally:
        await owner.listen()
    response = await sent
    assert response.status_code == 202, response.text
    assert owner.asked[job_id] == 1


async def test_an_owner_that_does_not_answer_makes_n8n_retry(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = f"ext_{uuid4().hex}"  # mining answers nobody in this test
    body = _body(job_id)
    response = await _post(client, job_id, body, _signed(body))
    assert_problem(response, status=503, code="owner_unavailable")
    assert response.headers["retry-after"] == "5"  # n8n's own retries are 5 s apart


async def test_a_callback_over_the_size_cap_is_413(client: httpx.AsyncClient, owner: Owner) -> None:
    job_id = owner.job()
    body = _body(job_id, content={"text": "x" * 2_000_000})
    assert (await _post(client, job_id, body, _signed(body))).status_code == 413
    assert owner.received == []


async def test_signature_headers_in_odd_bytes_reach_the_owner_as_latin_1(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = owner.job("invalid_signature")
    body = _body(job_id)
    headers = {b"X-BAI-Timestamp": b"\xb2", b"X-BAI-Signature": b"v1=\xff,v1=" + b"0" * 64}
    response = await client.post(f"/v1/webhooks/n8n/{job_id}", content=body, headers=headers)
    assert_problem(response, status=401, code="invalid_signature")
    [delivery] = owner.received
    assert (delivery.timestamp, delivery.signature) == ("\xb2", "v1=\xff,v1=" + "0" * 64)
