"""n8n callbacks in: verify on the raw body, route by job-id prefix, publish, answer 202.

The routing table (prefix -> owning service) is a setting, so a new service adds a prefix,
not code. The owner tells how a job's callbacks are verified (NATS request/reply; the
answer is cached briefly), the callback goes to JetStream for the owner with a dedupe id
made from the job and the body (n8n's retries of the same callback collapse into one
message), and the answer is 202 once JetStream has it.

Replays: a signed callback carries its timestamp, so a copy is refused after the tolerance.
The original ``X-BAI-Secret`` header carries none, so a captured callback can be sent again
at any time, and JetStream's duplicate window (two minutes) forgets the first copy. A replay
is still harmless: its event id depends only on the job and the body, and the owner's
consumer inbox keeps every event id it applied (never pruned), so the copy is acknowledged
without effect. Whoever prunes inboxes must keep callback ids for the life of their jobs.
"""

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import TTLCache
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout

from bai_contracts import (
    CallbackReceived,
    CallbackVerification,
    CallbackVerificationRequest,
    callback_subject,
    callback_verification_subject,
)
from bai_platform.envelope import new_event
from bai_platform.errors import NotFound, ServiceUnavailable, Unauthorized, Unprocessable
from bai_platform.messaging import NatsLink
from bai_platform.rpc import Unreachable, ask
from bai_platform.webhooks import SignatureError, verify_secret_header, verify_signature

JOB_ID = re.compile(r"^(?P<prefix>[a-z]{2,10})_[A-Za-z0-9_-]{6,100}$")
# Short: a tenant replacing its workflow secret is verified with the new one soon after.
VERIFICATION_CACHE_SECONDS = 30
# When an owner that could not answer may be asked again (n8n retries 5 s apart).
OWNER_RETRY_AFTER_SECONDS = 5


class UnknownJob(NotFound):
    code = "unknown_job"


class BadCallbackSignature(Unauthorized):
    code = "invalid_signature"


class CallbackRejected(Unprocessable):
    code = "invalid_callback"


class OwnerUnavailable(ServiceUnavailable):
    code = "owner_unavailable"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(OWNER_RETRY_AFTER_SECONDS)})
        super().__init__(detail, **kwargs)


@dataclass(frozen=True, slots=True)
class CallbackHeaders:
    timestamp: str | None
    signature: str | None
    secret: str | None


class CallbackRouter:
    """``owner_deadline_seconds`` bounds the whole question to the owner. While nobody
    answers its subject (a restart, a rolling update) the question is asked again with a
    short backoff until then; an owner that takes the whole deadline is unavailable, and
    n8n retries the callback later."""

    def __init__(
        self,
        *,
        link: NatsLink,
        routes: dict[str, str],
        publish_timeout_seconds: float = 2.0,
        owner_deadline_seconds: float = 5.0,
    ) -> None:
        self._link, self._routes, self._timeout = link, routes, publish_timeout_seconds
        self._deadline = owner_deadline_seconds
        self._verifications: TTLCache[str, CallbackVerification] = TTLCache(
            maxsize=10_000, ttl=VERIFICATION_CACHE_SECONDS
        )
        self._asking: dict[str, asyncio.Task[CallbackVerification]] = {}

    @property
    def connected(self) -> bool:
        return self._link.client is not None and self._link.client.is_connected

    async def receive(self, *, job_id: str, body: bytes, headers: CallbackHeaders) -> str:
        """Verify, publish for the owner, and return the event id."""
        owner = self._owner(job_id)
        verification = await self._verification(owner, job_id)
        verified_by = _verify(verification, headers, body)
        payload = _payload(job_id, body)
        # Stable for a given job and body, whenever it comes: see "Replays" above.
        event_id = "cb_" + hashlib.sha256(job_id.encode() + b"\0" + body).hexdigest()[:40]
        event = CallbackReceived(job_id=job_id, payload=payload, verified_by=verified_by)
        envelope = new_event(
            event,
            source="gateway",
            tenant_id=verification.tenant_id,
            subject=job_id,
            event_id=event_id,
            event_type=callback_subject(owner),
        )
        await self._publish(envelope.type, envelope.to_bytes(), event_id)
        return event_id

    def _owner(self, job_id: str) -> str:
        match = JOB_ID.match(job_id)
        owner = self._routes.get(match.group("prefix")) if match else None
        if owner is None:
            raise UnknownJob("no service owns jobs with this id")
        return owner

    async def _verification(self, owner: str, job_id: str) -> CallbackVerification:
        cached = self._verifications.get(job_id)
        if cached is None:
            cached = await self._ask_once(owner, job_id)
            if cached.found:  # an unknown job may exist a moment later; ask again then
                self._verifications[job_id] = cached
        if not cached.found or cached.tenant_id is None:
            raise UnknownJob("the owning service knows no such job")
        return cached

    async def _ask_once(self, owner: str, job_id: str) -> CallbackVerification:
        """One question per job at a time: the callbacks of a job that arrive together (n8n
        retrying, a storm) wait for the same answer. Asked once each, a storm of them
        multiplied the owner's work until its answers came too late (503s)."""
        asking = self._asking.get(job_id)
        if asking is None:
            asking = asyncio.create_task(self._ask_owner(owner, job_id))
            self._asking[job_id] = asking
            asking.add_done_callback(lambda done: self._answered(job_id, done))
        # Shielded: a caller that hangs up does not cancel the question for the others.
        return await asyncio.shield(asking)

    def _answered(self, job_id: str, done: asyncio.Task[CallbackVerification]) -> None:
        self._asking.pop(job_id, None)
        if not done.cancelled():
            done.exception()  # every waiter has it (or has left): never "not retrieved"

    async def _ask_owner(self, owner: str, job_id: str) -> CallbackVerification:
        subject = callback_verification_subject(owner)
        question = CallbackVerificationRequest(job_id=job_id)
        try:
            return await ask(
                self._link.client, subject, question, CallbackVerification, within=self._deadline
            )
        except (Unreachable, ValueError) as exc:
            raise OwnerUnavailable(f"{owner} cannot verify callbacks right now") from exc

    async def _publish(self, subject: str, data: bytes, event_id: str) -> None:
        try:
            await (
                self._client()
                .jetstream()
                .publish(subject, data, headers={"Nats-Msg-Id": event_id}, timeout=self._timeout)
            )
        except (NatsTimeout, NatsError) as exc:
            raise OwnerUnavailable("the callback could not be queued; retry") from exc

    def _client(self) -> NatsClient:
        client = self._link.client
        if client is None or not client.is_connected:
            raise OwnerUnavailable("the message bus is not reachable; retry")
        return client


def _verify(
    verification: CallbackVerification, headers: CallbackHeaders, body: bytes
) -> Literal["signature", "secret_header"]:
    secret = verification.secret or ""
    try:
        if headers.signature is None and verification.accept_secret_header:
            verify_secret_header(secret=secret, presented=headers.secret)
            return "secret_header"
        verify_signature(
            secret=secret,
            timestamp=headers.timestamp,
            signature=headers.signature,
            body=body,
            now=time.time(),
        )
    except SignatureError as exc:
        raise BadCallbackSignature(str(exc)) from exc
    return "signature"


def _payload(job_id: str, body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise CallbackRejected("the callback body is not JSON") from exc
    if not isinstance(payload, dict):
        raise CallbackRejected("the callback body must be a JSON object")
    if payload.get("job_id", job_id) != job_id:
        raise CallbackRejected("the body's job_id is not the job in the URL")
    return payload
