"""The owner's side of n8n callbacks: verify them where the secret lives, and record them.

The gateway routes a callback by its job id's prefix and hands it, as received (raw body
and signature headers), to the owning service over NATS request/reply
(``callback_delivery_subject``: a NATS micro service, so ``$SRV`` discovery lists it and
the queue group spreads callbacks over the service's workers). In one transaction the
owner:

1. looks the job up in its own database: its tenant and the secret its workflow signs
   with (``unknown_job`` when there is no such job);
2. verifies the signature (``X-BAI-Timestamp`` within the tolerance, any ``v1=`` of
   ``X-BAI-Signature`` matching), or the original system's ``X-BAI-Secret`` header where
   the tenant allows it (``invalid_signature``);
3. reads the body: a JSON object whose ``job_id``, if any, is the job's
   (``invalid_callback``);
4. records it in its outbox as ``CallbackReceived`` on ``callback_subject(owner)``, with
   an event id made of the job and the body, so n8n's retries of one callback are one
   event whenever they come; its own consumer applies it once (the inbox keeps every id);
5. answers ``accepted`` with the event id, which the gateway returns with 202.

So the tenant's secret never leaves its service, and nothing is answered 202 that is not
committed. Replays of the original header (it carries no timestamp) are taken at any time
and are harmless: same job and body, same event id, already in the consumer's inbox.
"""

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol
from uuid import UUID

from cryptography.fernet import Fernet
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CallbackDelivery,
    CallbackReceived,
    CallbackVerdict,
    callback_delivery_subject,
    callback_subject,
)
from bai_platform.envelope import new_event
from bai_platform.outbox import emit
from bai_platform.rpc import Endpoint, serve_rpc
from bai_platform.secrets import read_secret
from bai_platform.webhooks import SignatureError, verify_secret_header, verify_signature
from bai_platform.worker import WorkerContext

# Bodies above this are parsed in a thread: the worker's loop keeps answering meanwhile.
PARSE_IN_THREAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class JobSigner:
    """How one job's callbacks verify: its tenant, and the secret its workflow signs with
    (empty when there is none or it cannot be read: then nothing verifies)."""

    tenant_id: UUID
    secret: str
    accept_secret_header: bool = False


Lookup = Callable[[AsyncSession, str], Awaitable[JobSigner | None]]


class SignedWorkflow(Protocol):
    """A tenant's workflow as stored: its signing secret encrypted."""

    @property
    def secret(self) -> bytes | None: ...

    @property
    def accept_secret_header(self) -> bool: ...


def signer_of(tenant_id: UUID, workflow: SignedWorkflow | None, *, box: Fernet) -> JobSigner:
    """The signer for a job of ``tenant_id`` that ``workflow`` was given."""
    secret = read_secret(box, workflow.secret) if workflow is not None else None
    return JobSigner(
        tenant_id=tenant_id,
        secret=secret or "",
        accept_secret_header=workflow is not None and workflow.accept_secret_header,
    )


async def serve_callbacks(ctx: WorkerContext[Any], *, lookup: Lookup, outbox: Table) -> None:
    """A worker task: take the service's callbacks from the gateway until the worker stops."""
    service = ctx.settings.service_name
    endpoint = Endpoint(
        "callback",
        callback_delivery_subject(service),
        CallbackDelivery,
        partial(take_callback, service=service, lookup=lookup, outbox=outbox),
    )
    await serve_rpc(
        ctx,
        service=f"{service}-callbacks",
        endpoints=[endpoint],
        description=f"n8n callbacks of {service} jobs, verified and recorded",
    )


async def take_callback(
    session: AsyncSession,
    delivery: CallbackDelivery,
    *,
    service: str,
    lookup: Lookup,
    outbox: Table,
    now: Callable[[], float] = time.time,
) -> CallbackVerdict:
    """Steps 1 to 5 of the module docstring, in the caller's transaction."""
    signer = await lookup(session, delivery.job_id)
    if signer is None:
        return CallbackVerdict(outcome="unknown_job", detail="the owning service knows no such job")
    try:
        body = delivery.body
    except ValueError:
        return CallbackVerdict(outcome="invalid_callback", detail="the body could not be read")
    try:
        verified_by = verify(signer, delivery, body, now=now())
    except SignatureError as exc:
        return CallbackVerdict(outcome="invalid_signature", detail=str(exc))
    try:
        payload = await _payload(delivery.job_id, body)
    except ValueError as exc:
        return CallbackVerdict(outcome="invalid_callback", detail=str(exc))
    event_id = callback_event_id(delivery.job_id, body)
    event = CallbackReceived(job_id=delivery.job_id, payload=payload, verified_by=verified_by)
    envelope = new_event(
        event,
        source=service,
        tenant_id=signer.tenant_id,
        subject=delivery.job_id,
        event_id=event_id,
        event_type=callback_subject(service),
    )
    await emit(session, outbox, envelope, once=True)
    return CallbackVerdict(outcome="accepted", event_id=event_id)


def verify(
    signer: JobSigner, delivery: CallbackDelivery, body: bytes, *, now: float
) -> Literal["signature", "secret_header"]:
    """How the callback proved itself; ``SignatureError`` when it did not."""
    if delivery.signature is None and signer.accept_secret_header:
        verify_secret_header(secret=signer.secret, presented=delivery.secret)
        return "secret_header"
    verify_signature(
        secret=signer.secret,
        timestamp=delivery.timestamp,
        signature=delivery.signature,
        body=body,
        now=now,
    )
    return "signature"


def callback_event_id(job_id: str, body: bytes) -> str:
    """The same for a given job and body, whenever it comes (see the module docstring)."""
    return "cb_" + hashlib.sha256(job_id.encode() + b"\0" + body).hexdigest()[:40]


async def _payload(job_id: str, body: bytes) -> dict[str, Any]:
    try:
        if len(body) > PARSE_IN_THREAD_BYTES:
            payload = await asyncio.to_thread(json.loads, body)
        else:
            payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # nested past Python's limit: not for us
        raise ValueError("the callback body is not JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("the callback body must be a JSON object")
    if payload.get("job_id", job_id) != job_id:
        raise ValueError("the body's job_id is not the job in the URL")
    return payload
