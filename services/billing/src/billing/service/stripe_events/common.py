"""What every Stripe event handler needs: whose object it is, ids, times, notices.

Events are read as the ``stripe`` library's objects (``stripe.Event.construct_from``): the
event's object is a ``stripe.Invoice``, ``stripe.Subscription``... by its ``object`` field,
and each handler takes the class it handles (``object_of``). Fields that not every API
version sends are read with ``field``, which answers None where one is absent: a stored
event keeps the version it was sent in.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import stripe
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import BillingNotice
from bai_contracts.billing import NoticeKind
from bai_platform.envelope import new_event
from bai_platform.outbox import emit
from billing.models import Customer, outbox
from billing.service.plans import Catalogue


class NotYet(Exception):
    """The event cannot be applied yet (try again later); the message says why."""


@dataclass(frozen=True, slots=True)
class Rules:
    catalogue: Catalogue
    grace: timedelta


Handler = Callable[[AsyncSession, stripe.Event, Rules], Awaitable[None]]
ObjectT = TypeVar("ObjectT", bound=stripe.StripeObject)


def object_of(event: stripe.Event, kind: type[ObjectT]) -> ObjectT:
    """The event's object, as the class its type promises (else the event is refused)."""
    obj: object = event.data.object
    if not isinstance(obj, kind):
        raise ValueError(
            f"a {event.type} event carries a {type(obj).__name__}, not {kind.__name__}"
        )
    return obj


def field(obj: object, *path: str) -> Any:
    """A field of a Stripe object (a path through nested ones), or None where it is absent."""
    value: Any = obj
    for key in path:
        if not isinstance(value, stripe.StripeObject) or key not in value:
            return None
        value = value[key]
    return value


def id_of(value: object) -> str | None:
    """Stripe ids come as a string, or as the expanded object."""
    if isinstance(value, str):
        return value
    found = field(value, "id")
    return found if isinstance(found, str) else None


def own_id(obj: stripe.StripeObject, what: str) -> str:
    """The object's own id; an object without one cannot be applied (``what`` says which)."""
    found = id_of(obj)
    if found is None:
        raise ValueError(f"the {what} has no id")
    return found


def uuid_of(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


async def tenant_of(session: AsyncSession, obj: stripe.StripeObject, *metadata: Any) -> UUID:
    """The workspace an object belongs to: our metadata on it, else its customer."""
    for source in (field(obj, "metadata"), *metadata):
        if tenant := uuid_of(field(source, "tenant_id")):
            return tenant
    customer = id_of(field(obj, "customer"))
    if customer:
        known = await session.scalar(
            select(col(Customer.tenant_id)).where(col(Customer.stripe_customer_id) == customer)
        )
        if known is not None:
            return known
    raise NotYet(f"no workspace is known for customer {customer!r} yet")


async def link_customer(session: AsyncSession, tenant: UUID, customer: str | None) -> None:
    if customer:
        await session.execute(
            insert(Customer)
            .values(tenant_id=tenant, stripe_customer_id=customer)
            .on_conflict_do_nothing()
        )


def timestamp(value: object) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


def price_of(item_or_line: object) -> str | None:
    # Subscription items and (older) invoice lines carry ``price``; invoice lines of API
    # versions from 2025 on carry ``pricing.price_details.price``.
    return id_of(field(item_or_line, "price")) or id_of(
        field(item_or_line, "pricing", "price_details", "price")
    )


def money(obj: stripe.StripeObject, amount: str) -> str:
    currency = str(field(obj, "currency") or "").upper()
    return f"{int(field(obj, amount) or 0) / 100:.2f} {currency}".strip()


async def notice(
    session: AsyncSession, tenant: UUID, kind: NoticeKind, message: str, reference: str | None
) -> None:
    notice = BillingNotice(notice=kind, message=message[:500], reference=reference)
    await emit(session, outbox, new_event(notice, source="billing", tenant_id=tenant))


def now() -> datetime:
    return datetime.now(UTC)
