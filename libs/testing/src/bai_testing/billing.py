"""A stand-in for billing's quota answers in tests: a NATS micro service on the test's
connection that answers ``reserve``, ``commit`` and ``release`` (the contract in
``bai_contracts.billing``) as told, and records what it was asked."""

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.micro import add_service
from nats.micro.request import Request

from bai_contracts import QuotaAnswer, quota_subject

OPERATIONS = ("reserve", "commit", "release")


@dataclass
class BillingStandIn:
    """What was asked, in order, and how reservations are answered next.

    With ``refuse`` set, reservations are refused (``insufficient_credits`` with
    ``reason``); every other question is granted with ``balances``.
    """

    balances: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    refuse: bool = False
    asked: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def of(self, reference: str) -> list[tuple[str, dict[str, object]]]:
        """The questions about ``reference`` (a job's id), in order: (operation, body)."""
        return [(op, body) for op, body in self.asked if body.get("reference") == reference]

    async def answer(self, request: Request) -> None:
        operation = request.subject.rsplit(".", 1)[-1]
        self.asked.append((operation, json.loads(request.data)))
        if operation == "reserve" and self.refuse:
            answer = QuotaAnswer(ok=False, code="insufficient_credits", reason=self.reason)
        else:
            answer = QuotaAnswer(ok=True, balances=self.balances)
        await request.respond(answer.model_dump_json().encode())


@contextlib.asynccontextmanager
async def billing_stand_in(
    nc: NatsClient,
    *,
    balances: dict[str, int] | None = None,
    reason: str | None = None,
) -> AsyncIterator[BillingStandIn]:
    """Answer billing's quota questions on ``nc`` for the block."""
    stand_in = BillingStandIn(balances=dict(balances or {}), reason=reason)
    service = await add_service(nc, name="billing-stand-in", version="0.0.1")
    try:
        for operation in OPERATIONS:
            await service.add_endpoint(
                name=operation, subject=quota_subject(operation), handler=stand_in.answer
            )
        await nc.flush()  # the server knows the responders before any question is asked
        yield stand_in
    finally:
        await service.stop()
