"""The credit ledger: grants, reservations, commits and releases, each exactly once.

Every operation is keyed: a grant by its source (an invoice id, the starter grant of a
workspace), a reservation, commit and release by the job that uses the credits. Asking
twice changes nothing the second time and answers the same. A reservation that does not
fit is refused with the balance left; nothing ever goes below zero.
"""

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CREDIT_KINDS,
    CommitCredits,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
)
from billing.models import CreditAccount, LedgerEntry, Reservation


async def balances(session: AsyncSession, *, tenant_id: UUID) -> dict[str, int]:
    """Credits available now, per kind (every kind named, zero when never granted)."""
    rows = await session.execute(
        select(CreditAccount.kind, CreditAccount.available).where(
            CreditAccount.tenant_id == tenant_id
        )
    )
    return dict.fromkeys(CREDIT_KINDS, 0) | {kind: int(n) for kind, n in rows}


async def grant(
    session: AsyncSession, *, tenant_id: UUID, kind: str, amount: int, reference: str
) -> bool:
    """Add credits once per ``reference``; False when it was granted before."""
    if not await _entry(session, tenant_id, kind, "grant", amount, reference):
        return False
    await _account(session, tenant_id, kind)
    await session.execute(
        update(CreditAccount)
        .where(CreditAccount.tenant_id == tenant_id, CreditAccount.kind == kind)
        .values(available=CreditAccount.available + amount, updated_at=_now())
    )
    return True


async def reserve(session: AsyncSession, question: ReserveCredits) -> QuotaAnswer:
    """Hold credits for a job, or refuse with the reason; the same job asking again gets
    the first answer."""
    tenant, kind = question.tenant_id, question.kind
    held = await _reservation(session, tenant, kind, question.reference)
    if held is not None:
        return await _answer(session, tenant, ok=held.state != "released", code=_code(held))
    await _account(session, tenant, kind)
    taken = await session.scalar(
        update(CreditAccount)
        .where(
            CreditAccount.tenant_id == tenant,
            CreditAccount.kind == kind,
            CreditAccount.available >= question.amount,
        )
        .values(
            available=CreditAccount.available - question.amount,
            reserved=CreditAccount.reserved + question.amount,
            updated_at=_now(),
        )
        .returning(CreditAccount.available)
    )
    if taken is None:
        left = (await balances(session, tenant_id=tenant))[kind]
        reason = f"{question.amount} {kind} credits needed, {left} left"
        return await _answer(session, tenant, ok=False, code="insufficient_credits", reason=reason)
    session.add(
        Reservation(
            tenant_id=tenant,
            kind=kind,
            reference=question.reference,
            amount=question.amount,
            state="held",
        )
    )
    await _entry(session, tenant, kind, "reservation", -question.amount, question.reference)
    return await _answer(session, tenant, ok=True)


async def commit(session: AsyncSession, question: CommitCredits) -> QuotaAnswer:
    """Charge what the job used; what it held beyond that goes back."""
    tenant, kind = question.tenant_id, question.kind
    held = await _reservation(session, tenant, kind, question.reference, lock=True)
    if held is None:
        return await _answer(session, tenant, ok=False, code="unknown_reservation")
    if held.state != "held":
        return await _answer(session, tenant, ok=held.state == "committed", code=_code(held))
    used = held.amount if question.amount is None else min(question.amount, held.amount)
    await _settle(session, held, state="committed", charged=used)
    await _entry(session, tenant, kind, "commit", 0, question.reference)
    if used < held.amount:
        await _entry(session, tenant, kind, "release", held.amount - used, question.reference)
    return await _answer(session, tenant, ok=True)


async def release(session: AsyncSession, question: ReleaseCredits) -> QuotaAnswer:
    """Give back everything the job holds (a job that failed, timed out or was cancelled)."""
    tenant, kind = question.tenant_id, question.kind
    held = await _reservation(session, tenant, kind, question.reference, lock=True)
    if held is None:
        return await _answer(session, tenant, ok=True, code="nothing_held")
    if held.state != "held":
        return await _answer(session, tenant, ok=held.state == "released", code=_code(held))
    await _settle(session, held, state="released", charged=0)
    await _entry(session, tenant, kind, "release", held.amount, question.reference)
    return await _answer(session, tenant, ok=True)


async def _settle(session: AsyncSession, held: Reservation, *, state: str, charged: int) -> None:
    back = held.amount - charged
    held.state, held.charged, held.settled_at = state, charged, _now()
    await session.execute(
        update(CreditAccount)
        .where(CreditAccount.tenant_id == held.tenant_id, CreditAccount.kind == held.kind)
        .values(
            available=CreditAccount.available + back,
            reserved=CreditAccount.reserved - held.amount,
            updated_at=_now(),
        )
    )


def _code(held: Reservation) -> str | None:
    return {"committed": "already_committed", "released": "already_released"}.get(held.state)


async def _reservation(
    session: AsyncSession, tenant: UUID, kind: str, reference: str, *, lock: bool = False
) -> Reservation | None:
    query = select(Reservation).where(
        Reservation.tenant_id == tenant,
        Reservation.kind == kind,
        Reservation.reference == reference,
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def _account(session: AsyncSession, tenant: UUID, kind: str) -> None:
    statement = insert(CreditAccount).values(tenant_id=tenant, kind=kind, available=0, reserved=0)
    await session.execute(statement.on_conflict_do_nothing())


async def _entry(
    session: AsyncSession, tenant: UUID, kind: str, entry: str, amount: int, reference: str
) -> bool:
    statement = (
        insert(LedgerEntry)
        .values(tenant_id=tenant, kind=kind, entry=entry, amount=amount, reference=reference)
        .on_conflict_do_nothing()
        .returning(LedgerEntry.id)
    )
    return await session.scalar(statement) is not None


async def _answer(
    session: AsyncSession,
    tenant: UUID,
    *,
    ok: bool,
    code: str | None = None,
    reason: str | None = None,
) -> QuotaAnswer:
    current = await balances(session, tenant_id=tenant)
    return QuotaAnswer(ok=ok, code=code, reason=reason, balances=current)


def _now() -> datetime:
    return datetime.now(UTC)
