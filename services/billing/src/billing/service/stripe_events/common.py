"""What every Stripe event handler needs: whose object it is, ids, times, notices."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

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


Handler = Callable[[AsyncSession, dict[str, Any], dict[str, Any], Rules], Awaitable[None]]


def id_of(value: object) -> str | None:
    """Stripe ids come as a string, or as the expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def own_id(obj: dict[str, Any], what: str) -> str:
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


def dig(obj: dict[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


async def tenant_of(session: AsyncSession, obj: dict[str, Any], *metadata: Any) -> UUID:
    """The workspace an object belongs to: our metadata on it, else its customer."""
    for source in (obj.get("metadata"), *metadata):
        if isinstance(source, dict) and (tenant := uuid_of(source.get("tenant_id"))):
            return tenant
    customer = id_of(obj.get("customer"))
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


def price_of(item_or_line: dict[str, Any]) -> str | None:
    # Subscription items and (older) invoice lines carry ``price``; invoice lines of API
    # versions from 2025 on carry ``pricing.price_details.price``.
    return id_of(item_or_line.get("price")) or id_of(
        dig(item_or_line, "pricing", "price_details", "price")
    )


def money(obj: dict[str, Any], field: str) -> str:
    return f"{int(obj.get(field) or 0) / 100:.2f} {str(obj.get('currency', '')).upper()}".strip()


async def notice(
    session: AsyncSession, tenant: UUID, kind: NoticeKind, message: str, reference: str | None
) -> None:
    notice = BillingNotice(notice=kind, message=message[:500], reference=reference)
    await emit(session, outbox, new_event(notice, source="billing", tenant_id=tenant))


def now() -> datetime:
    return datetime.now(UTC)
