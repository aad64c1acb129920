"""Through Traefik (no ForwardAuth on webhooks): a signed callback reaches JetStream."""

import json
import time
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import nats
import pytest
from nats.micro import add_service
from nats.micro.request import Request

from bai_contracts import CallbackVerification, callback_subject, callback_verification_subject
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.webhooks import sign

pytestmark = pytest.mark.integration

SECRET = "edge-test-workflow-secret"


@pytest.fixture
async def known_job(system: Stack) -> AsyncIterator[str]:
    """A job creator would know; this test stands in for creator's verification endpoint."""
    job_id = f"gen_{uuid4().hex}"
    nc = await nats.connect(system.nats_url)

    async def answer(request: Request) -> None:
        found = json.loads(request.data)["job_id"] == job_id
        reply = CallbackVerification(found=found, tenant_id=uuid4(), secret=SECRET)
        await request.respond(reply.model_dump_json().encode())

    service = await add_service(nc, name="creator-callbacks-edge-test", version="0.1.0")
    await service.add_endpoint(
        name="verification", handler=answer, subject=callback_verification_subject("creator")
    )
    try:
        yield job_id
    finally:
        await service.stop()
        await nc.close()


def _headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    now = int(time.time())
    return {"X-BAI-Timestamp": str(now), "X-BAI-Signature": sign(secret, now, body)}


async def test_signed_callback_through_the_edge_is_202_and_queued(
    system: Stack, edge: httpx.AsyncClient, known_job: str
) -> None:
    body = json.dumps({"job_id": known_job, "status": "completed", "content": {}}).encode()
    response = await edge.post(
        f"/v1/webhooks/n8n/{known_job}", content=body, headers=_headers(body)
    )
    assert response.status_code == 202, response.text
    nc = await nats.connect(system.nats_url)
    try:
        message = await nc.jetstream().get_last_msg("GATEWAY", callback_subject("creator"))
    finally:
        await nc.close()
    assert Envelope.model_validate_json(message.data or b"").subject == known_job


async def test_forged_callback_through_the_edge_is_401(
    edge: httpx.AsyncClient, known_job: str
) -> None:
    body = json.dumps({"job_id": known_job, "status": "completed"}).encode()
    response = await edge.post(
        f"/v1/webhooks/n8n/{known_job}", content=body, headers=_headers(body, secret="forged")
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
