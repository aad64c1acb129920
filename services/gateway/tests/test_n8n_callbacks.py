"""n8n callbacks: verified on the raw body, routed by prefix, queued once, answered 202."""

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from bai_contracts import (
    STREAMS,
    CallbackVerification,
    CallbackVerificationRequest,
    callback_subject,
    callback_verification_subject,
)
from bai_platform.app_state import held
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.messaging import ensure_streams
from bai_platform.webhooks import sign
from gateway.state import GatewayState

from .conftest import assert_problem

SECRET = "workflow-signing-secret-of-the-tenant"
# The owner stood in for here is a test-only service (its prefix is tst_, see conftest):
# real services may answer for their own prefixes in the same session.
OWNER = "n8ntest"
CREATOR_SUBJECT = callback_subject(OWNER)


@dataclass
class Owner:
    """Creator's side of the contract: which jobs exist and how their callbacks verify."""

    nc: NatsClient
    js: JetStreamContext
    jobs: dict[str, CallbackVerification] = field(default_factory=dict)
    service: Service | None = None
    asked: Counter[str] = field(default_factory=Counter)
    delay: float = 0.0  # how long each answer takes

    async def listen(self) -> None:
        """Answer on the owner's subject (again), as a started owner process does."""
        self.service = await add_service(self.nc, name="n8ntest-callbacks", version="0.1.0")
        await self.service.add_endpoint(
            name="verification", handler=self.answer, subject=callback_verification_subject(OWNER)
        )
        await self.nc.flush()  # the server knows the responder before any request is sent
        await _answered(self.nc)

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def job(
        self,
        *,
        tenant: UUID | None = None,
        secret: str = SECRET,
        accept_secret_header: bool = False,
    ) -> str:
        job_id = f"tst_{uuid4().hex}"
        self.jobs[job_id] = CallbackVerification(
            found=True,
            tenant_id=tenant or uuid4(),
            secret=secret,
            accept_secret_header=accept_secret_header,
        )
        return job_id

    async def answer(self, request: Request) -> None:
        job_id = json.loads(request.data)["job_id"]
        self.asked[job_id] += 1
        await asyncio.sleep(self.delay)
        verification = self.jobs.get(job_id, CallbackVerification(found=False))
        await request.respond(verification.model_dump_json().encode())


@pytest.fixture
async def owner(migrated: Stack, app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[Owner]:
    nc = await nats.connect(migrated.nats_url)
    js = nc.jetstream()
    await ensure_streams(js, [s for s in STREAMS if s.service == "gateway"])
    owner = Owner(nc=nc, js=js)
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
    probe = CallbackVerificationRequest(job_id="tst_readiness_probe").model_dump_json()
    async with asyncio.timeout(10):
        while True:
            try:
                await nc.request(callback_verification_subject(OWNER), probe.encode(), timeout=1)
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


async def _queued(js: JetStreamContext, job_id: str) -> list[Envelope]:
    """The callbacks queued for creator about this job."""
    pull = await js.pull_subscribe(CREATOR_SUBJECT, stream="GATEWAY")
    found: list[Envelope] = []
    try:
        while True:
            try:
                messages = await pull.fetch(100, timeout=0.5)
            except (TimeoutError, NatsTimeout):
                return found
            envelopes = [Envelope.model_validate_json(m.data) for m in messages]
            found += [e for e in envelopes if e.subject == job_id]
    finally:
        await pull.unsubscribe()


async def _post(
    client: httpx.AsyncClient, job_id: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/v1/webhooks/n8n/{job_id}", content=body, headers=headers)


async def test_signed_callback_is_accepted_and_queued_for_the_owner(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    tenant = uuid4()
    job_id = owner.job(tenant=tenant)
    body = _body(job_id)
    response = await _post(client, job_id, body, _signed(body))
    assert response.status_code == 202, response.text
    [envelope] = await _queued(owner.js, job_id)
    assert envelope.id == response.json()["event_id"]
    assert envelope.type == CREATOR_SUBJECT
    assert envelope.tenantid == str(tenant)
    assert envelope.data["payload"]["content"] == {"text": "Hello"}
    assert envelope.data["verified_by"] == "signature"


async def test_callbacks_of_a_job_arriving_together_ask_its_owner_once(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    # Found by the callback storm (tests/chaos): each of a job's callbacks asked the owner
    # on its own, and a storm of retries made creator answer too late (503s).
    job_id = owner.job()
    owner.delay = 0.3
    bodies = [_body(job_id, attempt=n) for n in range(20)]

    answers = await asyncio.gather(*(_post(client, job_id, b, _signed(b)) for b in bodies))

    assert [a.status_code for a in answers] == [202] * 20
    assert owner.asked[job_id] == 1


async def test_a_repeated_callback_is_queued_once(client: httpx.AsyncClient, owner: Owner) -> None:
    job_id = owner.job()
    body = _body(job_id)
    first = await _post(client, job_id, body, _signed(body))
    second = await _post(client, job_id, body, _signed(body))
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["event_id"] == second.json()["event_id"]
    assert len(await _queued(owner.js, job_id)) == 1


@pytest.mark.parametrize(
    "forge", ["tampered-body", "other-secret", "stale", "future", "no-headers", "v0-only"]
)
async def test_a_forged_or_stale_callback_is_401_and_nothing_is_queued(
    client: httpx.AsyncClient, owner: Owner, forge: str
) -> None:
    job_id = owner.job()
    body = _body(job_id)
    headers = {
        "tampered-body": _signed(_body(job_id, status="failed")),
        "other-secret": _signed(body, secret="not-the-tenants-secret"),
        "stale": _signed(body, at=time.time() - 301),
        "future": _signed(body, at=time.time() + 301),
        "no-headers": {"Content-Type": "application/json"},
        "v0-only": {
            **_signed(body),
            "X-BAI-Signature": _signed(body)["X-BAI-Signature"].replace("v1=", "v0="),
        },
    }[forge]
    response = await _post(client, job_id, body, headers)
    assert_problem(response, status=401, code="invalid_signature")
    assert await _queued(owner.js, job_id) == []


async def test_any_matching_v1_signature_passes_while_secrets_roll(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = owner.job()
    body = _body(job_id)
    headers = _signed(body)
    old = _signed(body, secret="the-previous-secret")["X-BAI-Signature"]
    headers["X-BAI-Signature"] = f"{old},{headers['X-BAI-Signature']}"
    assert (await _post(client, job_id, body, headers)).status_code == 202


async def test_the_original_shared_secret_header_works_only_where_configured(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    legacy, modern = owner.job(accept_secret_header=True), owner.job()
    for job_id, expected in ((legacy, 202), (modern, 401)):
        body = _body(job_id)
        headers = {"X-BAI-Secret": SECRET, "Content-Type": "application/json"}
        assert (await _post(client, job_id, body, headers)).status_code == expected
    wrong = await _post(client, legacy, _body(legacy), {"X-BAI-Secret": "nope"})
    assert_problem(wrong, status=401, code="invalid_signature")


async def test_an_empty_configured_secret_verifies_nothing(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = owner.job(secret="")
    body = _body(job_id)
    assert_problem(
        await _post(client, job_id, body, _signed(body, secret="")),
        status=401,
        code="invalid_signature",
    )


@pytest.mark.parametrize("job_id", ["zzz_0123456789", "gen", "no-prefix-at-all"])
async def test_a_job_no_service_owns_is_404(
    client: httpx.AsyncClient, owner: Owner, job_id: str
) -> None:
    body = _body(job_id)
    assert_problem(await _post(client, job_id, body, _signed(body)), status=404, code="unknown_job")


async def test_a_job_its_owner_does_not_know_is_404(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = f"tst_{uuid4().hex}"
    body = _body(job_id)
    assert_problem(await _post(client, job_id, body, _signed(body)), status=404, code="unknown_job")


async def test_a_callback_waits_for_an_owner_that_is_restarting(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    """Nobody answers the owner's subject for a moment (its process restarts): the
    callback is asked about again until the owner is back, then accepted."""
    job_id = owner.job()
    body = _body(job_id)
    await owner.stop()
    try:
        sent = asyncio.create_task(_post(client, job_id, body, _signed(body)))
        await asyncio.sleep(0.5)  # the restart's gap: the gateway finds no responders
        assert not sent.done(), (await sent).text
    finally:
        await owner.listen()
    response = await sent
    assert response.status_code == 202, response.text
    assert len(await _queued(owner.js, job_id)) == 1


async def test_an_owner_that_does_not_answer_makes_n8n_retry(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = f"ext_{uuid4().hex}"  # mining answers nobody in this test
    body = _body(job_id)
    response = await _post(client, job_id, body, _signed(body))
    assert_problem(response, status=503, code="owner_unavailable")
    assert response.headers["retry-after"] == "5"  # n8n's own retries are 5 s apart


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", None])
async def test_a_malformed_callback_is_422_and_nothing_is_queued(
    client: httpx.AsyncClient, owner: Owner, body: bytes | None
) -> None:
    job_id = owner.job()
    raw = body if body is not None else _body(f"tst_{uuid4().hex}")  # someone else's job
    response = await _post(client, job_id, raw, _signed(raw))
    assert_problem(response, status=422, code="invalid_callback")
    assert await _queued(owner.js, job_id) == []


async def test_a_callback_over_the_size_cap_is_413(client: httpx.AsyncClient, owner: Owner) -> None:
    job_id = owner.job()
    body = _body(job_id, content={"text": "x" * 2_000_000})
    assert (await _post(client, job_id, body, _signed(body))).status_code == 413


# Header bytes are read as Latin-1, so b"\xb2" arrives as "²", which str.isdigit() accepts
# and int() does not; compare_digest refuses non-ASCII text; int() refuses 4,301+ digits.
ODD_HEADERS: dict[str, dict[bytes, bytes]] = {
    "superscript-timestamp": {b"X-BAI-Timestamp": b"\xb2"},
    "superscript-inside-timestamp": {b"X-BAI-Timestamp": b"17\xb300000000"},
    "timestamp-beyond-ints-digit-limit": {b"X-BAI-Timestamp": b"9" * 5000},
    "non-ascii-signature": {b"X-BAI-Signature": "v1=é".encode("latin-1") + b"0" * 62},
    "non-ascii-among-signatures": {b"X-BAI-Signature": b"v1=\xff,v1=" + b"0" * 64},
}


@pytest.mark.parametrize("odd", list(ODD_HEADERS))
async def test_signature_headers_in_odd_characters_are_401_never_500(
    client: httpx.AsyncClient, owner: Owner, odd: str
) -> None:
    job_id = owner.job()
    body = _body(job_id)
    signed = {name.encode(): value.encode() for name, value in _signed(body).items()}
    headers = {**signed, **ODD_HEADERS[odd]}
    response = await client.post(f"/v1/webhooks/n8n/{job_id}", content=body, headers=headers)
    assert_problem(response, status=401, code="invalid_signature")
    assert await _queued(owner.js, job_id) == []


async def test_a_shared_secret_header_in_odd_characters_is_401_never_500(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    job_id = owner.job(accept_secret_header=True)
    headers = {b"X-BAI-Secret": SECRET.encode() + b"\xe9", b"Content-Type": b"application/json"}
    response = await client.post(
        f"/v1/webhooks/n8n/{job_id}", content=_body(job_id), headers=headers
    )
    assert_problem(response, status=401, code="invalid_signature")


async def test_a_replayed_legacy_callback_keeps_its_event_id_for_the_owners_inbox(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    # X-BAI-Secret carries no timestamp, so the gateway takes a replay at any time; once
    # JetStream's duplicate window has passed the stream keeps it too. What makes it
    # harmless is the event id: made of the job and the body alone, it is the one the owner's
    # inbox already holds, so the owner applies it once (test_consumer's
    # test_the_same_event_delivered_twice_is_applied_once shows the inbox side).
    job_id = owner.job(accept_secret_header=True)
    body = _body(job_id)
    headers = {"X-BAI-Secret": SECRET, "Content-Type": "application/json"}
    first = await _post(client, job_id, body, headers)
    replay = await _post(client, job_id, body, headers)
    assert (first.status_code, replay.status_code) == (202, 202)
    assert first.json()["event_id"] == replay.json()["event_id"]
    [envelope] = await _queued(owner.js, job_id)
    assert envelope.id == first.json()["event_id"]
    assert envelope.data["verified_by"] == "secret_header"
