"""The credit ledger: grants, reservations, commits, releases, refunds and expiry, each
exactly once.

Every operation is keyed: a grant by its source (``invoice:<id>`` for a paid invoice,
``starter:<tenant>`` for a new workspace), a reservation, commit and release by the job
that uses the credits, a claw-back by the refund, an expiry by the grant. Asking twice
changes nothing the second time and answers the same. A reservation that does not fit is
refused with the balance left; nothing ever goes below zero.

Grants and expiry (the monthly rules):
- each paid invoice of a subscription grants its plan's monthly credits, once, usable until
  the end of the period it paid for plus ``grant_grace_hours`` (Stripe retries a renewal
  for days, and nobody should be cut off while it does); the starter grant never expires;
- committed credits are spent from the grant that expires soonest (never-expiring last),
  so a month's credits are used before they lapse;
- when a grant's time is up, what is left of it expires (an ``expiry`` entry), but never
  more than is available: credits held by running jobs are not taken from under them;
- a refund takes back the refunded share of what that invoice granted, as far as it is
  left (credits already spent are not taken from other grants).

Locks: a transaction that touches both takes the account row first, then its grants, so
commits, expiry and claw-backs running at once never deadlock.

Alerts: when a kind's use reaches 80 % and 100 % of what its live grants gave (held
credits count as used), ``bai.billing.credits.threshold_reached.v1`` is announced once per
grant period (the newest grant names the period).
"""

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import (
    CREDIT_KINDS,
    CommitCredits,
    CreditsThresholdReached,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
)
from bai_platform.envelope import new_event
from bai_platform.outbox import emit
from billing.models import (
    CreditAccount,
    CreditGrant,
    LedgerEntry,
    Reservation,
    UsageAlert,
    outbox,
)

THRESHOLDS = (80, 100)


async def balances(session: AsyncSession, *, tenant_id: UUID) -> dict[str, int]:
    """Credits available now, per kind (every kind named, zero when never granted)."""
    rows = await session.execute(
        select(col(CreditAccount.kind), col(CreditAccount.available)).where(
            col(CreditAccount.tenant_id) == tenant_id
        )
    )
    return dict.fromkeys(CREDIT_KINDS, 0) | {kind: int(n) for kind, n in rows}


async def grant(
    session: AsyncSession,
    *,
    tenant_id: UUID,
    kind: str,
    amount: int,
    reference: str,
    expires_at: datetime | None = None,
    invoice_id: str | None = None,
) -> bool:
    """Add credits once per ``reference``; False when it was granted before."""
    if not await _entry(session, tenant_id, kind, "grant", amount, reference):
        return False
    session.add(
        CreditGrant(
            tenant_id=tenant_id,
            kind=kind,
            reference=reference,
            amount=amount,
            remaining=amount,
            clawed_back=0,
            invoice_id=invoice_id,
            expires_at=expires_at,
        )
    )
    await _account(session, tenant_id, kind)
    await session.execute(
        update(CreditAccount)
        .where(col(CreditAccount.tenant_id) == tenant_id, col(CreditAccount.kind) == kind)
        .values(available=col(CreditAccount.available) + amount, updated_at=_now())
    )
    return True


async def reserve(
    session: AsyncSession, question: ReserveCredits, *, starter: dict[str, int] | None = None
) -> QuotaAnswer:
    """Hold credits for a job, or refuse with the reason; the same job asking again gets
    the first answer.

    ``starter``: the starter grant. A workspace's first job can ask before billing has read
    the workspace's creation event; rather than refuse it, the starter grant (keyed by the
    workspace, so it is granted once whoever comes first) is made then and the job asks
    again.
    """
    tenant, kind = question.tenant_id, question.kind
    held = await _reservation(session, tenant, kind, question.reference)
    if held is not None:
        return await _answer(session, tenant, ok=held.state != "released", code=_code(held))
    taken = await _take(session, question)
    if taken is None and starter and not await _has_starter(session, tenant):
        # Whoever grants it first, this transaction or a concurrent one (which the ledger's
        # unique key makes it wait for), the balance is there when it asks again.
        await grant_starter(session, tenant, starter)
        taken = await _take(session, question)
    if taken is None:
        current = await balances(session, tenant_id=tenant)
        left = current[kind]
        reason = f"{question.amount} {kind} credits needed, {left} left"
        await alert_thresholds(session, tenant, kind, available=left)
        return QuotaAnswer(ok=False, code="insufficient_credits", reason=reason, balances=current)
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
    await alert_thresholds(session, tenant, kind, available=int(taken))
    return await _answer(session, tenant, ok=True)


async def _take(session: AsyncSession, question: ReserveCredits) -> int | None:
    """One conditional UPDATE: the balance left after holding, or None when it does not fit
    (or nothing was ever granted: no account row)."""
    taken = await session.scalar(
        update(CreditAccount)
        .where(
            col(CreditAccount.tenant_id) == question.tenant_id,
            col(CreditAccount.kind) == question.kind,
            col(CreditAccount.available) >= question.amount,
        )
        .values(
            available=col(CreditAccount.available) - question.amount,
            reserved=col(CreditAccount.reserved) + question.amount,
            updated_at=_now(),
        )
        .returning(col(CreditAccount.available))
    )
    return None if taken is None else int(taken)


async def _has_starter(session: AsyncSession, tenant: UUID) -> bool:
    found = await session.scalar(
        select(col(LedgerEntry.id))
        .where(
            col(LedgerEntry.tenant_id) == tenant,
            col(LedgerEntry.entry) == "grant",
            col(LedgerEntry.reference) == f"starter:{tenant}",
        )
        .limit(1)
    )
    return found is not None


async def grant_starter(session: AsyncSession, tenant: UUID, starter: dict[str, int]) -> bool:
    """The workspace's starter grant, once (keyed ``starter:<tenant>``); True when it was
    granted now."""
    granted = False
    for kind, amount in starter.items():
        if amount > 0:
            granted |= await grant(
                session, tenant_id=tenant, kind=kind, amount=amount, reference=f"starter:{tenant}"
            )
    return granted


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
    await _spend(session, tenant, kind, used)
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
        .where(col(CreditAccount.tenant_id) == held.tenant_id, col(CreditAccount.kind) == held.kind)
        .values(
            available=col(CreditAccount.available) + back,
            reserved=col(CreditAccount.reserved) - held.amount,
            updated_at=_now(),
        )
    )


async def _spend(session: AsyncSession, tenant: UUID, kind: str, amount: int) -> None:
    """Charge ``amount`` to the grants that expire soonest (never-expiring ones last)."""
    if amount <= 0:
        return
    grants = await session.scalars(
        select(CreditGrant)
        .where(
            col(CreditGrant.tenant_id) == tenant,
            col(CreditGrant.kind) == kind,
            col(CreditGrant.remaining) > 0,
            col(CreditGrant.expired_at).is_(None),
        )
        .order_by(col(CreditGrant.expires_at).asc().nulls_last(), col(CreditGrant.id))
        .with_for_update()
    )
    for bucket in grants:
        taken = min(bucket.remaining, amount)
        bucket.remaining -= taken
        amount -= taken
        if amount == 0:
            return


async def expire_due(
    session: AsyncSession, *, now: datetime | None = None, limit: int = 100
) -> int:
    """Let what is left of grants past their time expire; the number of grants expired."""
    moment = now or _now()
    due = (
        await session.execute(
            select(col(CreditGrant.id), col(CreditGrant.tenant_id), col(CreditGrant.kind))
            .where(col(CreditGrant.expires_at) <= moment, col(CreditGrant.expired_at).is_(None))
            .order_by(col(CreditGrant.expires_at))
            .limit(limit)
        )
    ).all()
    expired = 0
    for grant_id, tenant, kind in due:
        # Locks are always taken account first, then grants (as commits take them).
        await _lock_accounts(session, tenant, kind)
        bucket = await session.get(
            CreditGrant, grant_id, with_for_update=True, populate_existing=True
        )
        if bucket is None or bucket.expired_at is not None:
            continue  # another worker expired it meanwhile
        await _take_back(session, bucket, bucket.remaining, "expiry", f"expiry:{bucket.reference}")
        bucket.remaining, bucket.expired_at = 0, moment
        expired += 1
    return expired


async def claw_back(
    session: AsyncSession, *, tenant_id: UUID, invoice_id: str, share: float, reference: str
) -> int:
    """A refund of ``share`` (0..1, cumulative) of an invoice takes back that share of what
    it granted, as far as it is left; the credits taken back (every kind)."""
    await _lock_accounts(session, tenant_id)
    buckets = await session.scalars(
        select(CreditGrant)
        .where(col(CreditGrant.tenant_id) == tenant_id, col(CreditGrant.invoice_id) == invoice_id)
        .order_by(col(CreditGrant.id))
        .with_for_update()
    )
    total = 0
    for bucket in buckets:
        owed = int(bucket.amount * min(max(share, 0.0), 1.0)) - bucket.clawed_back
        if owed <= 0:
            continue
        bucket.clawed_back += owed
        if bucket.expired_at is not None:
            continue  # what it gave already expired: nothing left to take
        taken = await _take_back(session, bucket, min(owed, bucket.remaining), "refund", reference)
        bucket.remaining -= taken
        total += taken
    return total


async def _lock_accounts(session: AsyncSession, tenant: UUID, kind: str | None = None) -> None:
    query = select(col(CreditAccount.kind)).where(col(CreditAccount.tenant_id) == tenant)
    if kind is not None:
        query = query.where(col(CreditAccount.kind) == kind)
    await session.execute(query.order_by(col(CreditAccount.kind)).with_for_update())


async def _take_back(
    session: AsyncSession, bucket: CreditGrant, wanted: int, entry: str, reference: str
) -> int:
    """Take up to ``wanted`` from the available balance (never held credits, never below
    zero), with one ledger entry; what was taken."""
    if wanted <= 0:
        return 0
    available = await session.scalar(
        select(col(CreditAccount.available))
        .where(
            col(CreditAccount.tenant_id) == bucket.tenant_id, col(CreditAccount.kind) == bucket.kind
        )
        .with_for_update()
    )
    taken = min(wanted, int(available or 0))
    if taken <= 0:
        return 0
    if not await _entry(session, bucket.tenant_id, bucket.kind, entry, -taken, reference):
        return 0  # done before under this reference
    await session.execute(
        update(CreditAccount)
        .where(
            col(CreditAccount.tenant_id) == bucket.tenant_id, col(CreditAccount.kind) == bucket.kind
        )
        .values(available=col(CreditAccount.available) - taken, updated_at=_now())
    )
    return taken


async def alert_thresholds(
    session: AsyncSession, tenant: UUID, kind: str, *, available: int
) -> None:
    """Announce 80 % and 100 % use of ``kind`` (``available`` left now), once per grant
    period (the newest live grant names it)."""
    # One row: the newest live grant's reference, and what all live grants gave.
    newest = (
        await session.execute(
            select(
                col(CreditGrant.reference),
                func.sum(col(CreditGrant.amount) - col(CreditGrant.clawed_back)).over(),
            )
            .where(
                col(CreditGrant.tenant_id) == tenant,
                col(CreditGrant.kind) == kind,
                col(CreditGrant.expired_at).is_(None),
            )
            .order_by(col(CreditGrant.id).desc())
            .limit(1)
        )
    ).first()
    if newest is None:
        return
    period, granted = newest[0], int(newest[1] or 0)
    if granted <= 0:
        return
    used = (granted - available) * 100
    for threshold in THRESHOLDS:
        if used < threshold * granted:
            return
        inserted = await session.scalar(
            insert(UsageAlert)
            .values(tenant_id=tenant, kind=kind, threshold=threshold, period=period)
            .on_conflict_do_nothing()
            .returning(col(UsageAlert.threshold))
        )
        if inserted is None:
            continue
        fact = CreditsThresholdReached(
            kind=kind, threshold=threshold, granted=granted, available=available
        )
        await emit(session, outbox, new_event(fact, source="billing", tenant_id=tenant))


def _code(held: Reservation) -> str | None:
    return {"committed": "already_committed", "released": "already_released"}.get(held.state)


async def _reservation(
    session: AsyncSession, tenant: UUID, kind: str, reference: str, *, lock: bool = False
) -> Reservation | None:
    query = select(Reservation).where(
        col(Reservation.tenant_id) == tenant,
        col(Reservation.kind) == kind,
        col(Reservation.reference) == reference,
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
        .returning(col(LedgerEntry.id))
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
