"""n8n callbacks in: route by job-id prefix, hand to the owner, answer with its verdict.

The routing table (prefix -> owning service) is a setting, so a new service adds a prefix,
not code. The gateway holds no tenant's secret: it sends the raw body and the signature
headers to the owner over NATS request/reply, and the owner verifies them with its own
secret, records the callback and answers (``bai_platform.callbacks``). One hop:

- ``accepted``: 202 with the event id (the callback is committed in the owner's outbox);
- ``unknown_job``: 404; ``invalid_signature``: 401; ``invalid_callback``: 422;
- no answer within ``owner_deadline_seconds``: 503 with Retry-After, and n8n retries.

Identical callbacks arriving together (n8n retrying, a storm) share one question.
"""

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from bai_contracts import CallbackDelivery, CallbackVerdict, callback_delivery_subject
from bai_platform.errors import (
    NotFound,
    ServiceError,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
)
from bai_platform.messaging import NatsLink
from bai_platform.rpc import Unreachable, ask

JOB_ID = re.compile(r"^(?P<prefix>[a-z]{2,10})_[A-Za-z0-9_-]{6,100}$")
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


REFUSALS: dict[str, type[ServiceError]] = {
    "unknown_job": UnknownJob,
    "invalid_signature": BadCallbackSignature,
    "invalid_callback": CallbackRejected,
}


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
        self, *, link: NatsLink, routes: dict[str, str], owner_deadline_seconds: float = 5.0
    ) -> None:
        self._link, self._routes = link, routes
        self._deadline = owner_deadline_seconds
        self._asking: dict[CallbackDelivery, asyncio.Task[CallbackVerdict]] = {}

    @property
    def connected(self) -> bool:
        return self._link.client is not None and self._link.client.is_connected

    async def receive(self, *, job_id: str, body: bytes, headers: CallbackHeaders) -> str:
        """Hand the callback to its owner; the event id it was recorded as, or its refusal."""
        owner = self._owner(job_id)
        delivery = CallbackDelivery.of(
            job_id,
            body,
            timestamp=headers.timestamp,
            signature=headers.signature,
            secret=headers.secret,
        )
        verdict = await self._ask_once(owner, delivery)
        if verdict.outcome != "accepted" or verdict.event_id is None:
            refusal = REFUSALS.get(verdict.outcome, CallbackRejected)
            raise refusal(verdict.detail or None)
        return verdict.event_id

    def _owner(self, job_id: str) -> str:
        match = JOB_ID.match(job_id)
        owner = self._routes.get(match.group("prefix")) if match else None
        if owner is None:
            raise UnknownJob("no service owns jobs with this id")
        return owner

    async def _ask_once(self, owner: str, delivery: CallbackDelivery) -> CallbackVerdict:
        """One question per identical callback at a time: n8n's retries of a callback that
        arrive together wait for the same answer instead of multiplying the owner's work."""
        asking = self._asking.get(delivery)
        if asking is None:
            asking = asyncio.create_task(self._ask_owner(owner, delivery))
            self._asking[delivery] = asking
            asking.add_done_callback(lambda done: self._answered(delivery, done))
        # Shielded: a caller that hangs up does not cancel the question for the others.
        return await asyncio.shield(asking)

    def _answered(self, delivery: CallbackDelivery, done: asyncio.Task[CallbackVerdict]) -> None:
        self._asking.pop(delivery, None)
        if not done.cancelled():
            done.exception()  # every waiter has it (or has left): never "not retrieved"

    async def _ask_owner(self, owner: str, delivery: CallbackDelivery) -> CallbackVerdict:
        subject = callback_delivery_subject(owner)
        try:
            return await ask(
                self._link.client, subject, delivery, CallbackVerdict, within=self._deadline
            )
        except (Unreachable, ValueError) as exc:
            raise OwnerUnavailable(f"{owner} cannot take callbacks right now") from exc
