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

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import BigInteger, String, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
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
    params = {
        "tenant": tenant,
        "kind": kind,
        "reference": question.reference,
        "amount": question.amount,
        "starter": f"starter:{tenant}",
    }
    row = (await session.execute(_RESERVE, params)).one()
    if row.taken is None and row.existing is None and starter and not row.has_starter:
        # Whoever grants it first, this transaction or a concurrent one (which the ledger's
        # unique key makes it wait for), the balance is there when it asks again.
        await grant_starter(session, tenant, starter)
        row = (await session.execute(_RESERVE, params)).one()
    current = _balances(row.kinds, row.availables)
    if row.existing is not None:  # asked before: the first answer
        ok, code = row.existing != "released", _code_of(row.existing)
        return QuotaAnswer(ok=ok, code=code, balances=current)
    if row.taken is not None:
        current[kind] = int(row.taken)
    usage = _Usage(row.period, int(row.granted or 0), frozenset(row.alerted or ()))
    await _announce_use(session, tenant, kind, available=current[kind], usage=usage)
    if row.taken is None:
        reason = f"{question.amount} {kind} credits needed, {current[kind]} left"
        return QuotaAnswer(ok=False, code="insufficient_credits", reason=reason, balances=current)
    return QuotaAnswer(ok=True, balances=current)


# A reservation in one statement (a transaction's round trips, not its statements, are
# what a quota question costs: bench/README.md): the job's earlier reservation if any;
# else the conditional take from the account, the reservation and its ledger entry; with
# the balances before the take, whether the starter grant was made, and what the usage
# alerts need (the newest live grant names the period; what live grants gave; the alerts
# of that period already announced).
_RESERVE = text("""
WITH existing AS (
    SELECT state FROM reservations
    WHERE tenant_id = :tenant AND kind = :kind AND reference = :reference
), taken AS (
    UPDATE credit_accounts
    SET available = available - :amount, reserved = reserved + :amount, updated_at = now()
    WHERE tenant_id = :tenant AND kind = :kind AND available >= :amount
        AND NOT EXISTS (SELECT 1 FROM existing)
    RETURNING available
), held AS (
    INSERT INTO reservations (tenant_id, kind, reference, amount, state)
    SELECT :tenant, :kind, :reference, :amount, 'held' FROM taken
), entry AS (
    INSERT INTO ledger_entries (tenant_id, kind, entry, amount, reference)
    SELECT :tenant, :kind, 'reservation', -CAST(:amount AS bigint), :reference FROM taken
    ON CONFLICT DO NOTHING
), period AS (
    SELECT reference, sum(amount - clawed_back) OVER () AS granted
    FROM credit_grants
    WHERE tenant_id = :tenant AND kind = :kind AND expired_at IS NULL
    ORDER BY id DESC
    LIMIT 1
)
SELECT
    (SELECT state FROM existing) AS existing,
    (SELECT available FROM taken) AS taken,
    (SELECT array_agg(kind) FROM credit_accounts WHERE tenant_id = :tenant) AS kinds,
    (SELECT array_agg(available) FROM credit_accounts WHERE tenant_id = :tenant) AS availables,
    CASE WHEN NOT EXISTS (SELECT 1 FROM taken) THEN EXISTS (
        SELECT 1 FROM ledger_entries
        WHERE tenant_id = :tenant AND kind = ANY(:kinds) AND entry = 'grant'
            AND reference = :starter
    ) END AS has_starter,
    (SELECT reference FROM period) AS period,
    (SELECT granted FROM period) AS granted,
    (
        SELECT array_agg(threshold) FROM usage_alerts
        WHERE tenant_id = :tenant AND kind = :kind
            AND period = (SELECT reference FROM period)
    ) AS alerted
""").bindparams(
    bindparam("tenant", type_=PG_UUID(as_uuid=True)),
    bindparam("kind", type_=String),
    bindparam("reference", type_=String),
    bindparam("amount", type_=BigInteger),
    bindparam("starter", type_=String),
    bindparam("kinds", value=list(CREDIT_KINDS), type_=ARRAY(String)),
)


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
    return await _settle(session, question, state="committed", used=question.amount)


async def release(session: AsyncSession, question: ReleaseCredits) -> QuotaAnswer:
    """Give back everything the job holds (a job that failed, timed out or was cancelled)."""
    return await _settle(session, question, state="released", used=0)


async def _settle(
    session: AsyncSession,
    question: CommitCredits | ReleaseCredits,
    *,
    state: str,
    used: int | None,
) -> QuotaAnswer:
    """Settle the held reservation the ``state`` way, charging ``used`` (all it holds when
    None) to the grants; a reservation that is not held gets the answer it got before."""
    tenant, kind, reference = question.tenant_id, question.kind, question.reference
    params = {"tenant": tenant, "kind": kind, "reference": reference, "state": state, "used": used}
    settled = (await session.execute(_SETTLE, params)).one()
    if settled.charged is None:  # nothing held under that reference (any more)
        return await _answer_unsettled(session, tenant, kind, reference, state)
    if settled.charged > 0:
        await session.execute(_SPEND, {"tenant": tenant, "kind": kind, "amount": settled.charged})
    current = _balances(settled.kinds, settled.availables)
    current[kind] = int(settled.available)
    return QuotaAnswer(ok=True, balances=current)


async def _answer_unsettled(
    session: AsyncSession, tenant: UUID, kind: str, reference: str, wanted: str
) -> QuotaAnswer:
    """The answer to settling a reservation that is not held: unknown, or settled before
    (the same answer as then when it was settled the ``wanted`` way)."""
    held = await _reservation(session, tenant, kind, reference)
    if held is None:
        if wanted == "released":
            return await _answer(session, tenant, ok=True, code="nothing_held")
        return await _answer(session, tenant, ok=False, code="unknown_reservation")
    return await _answer(session, tenant, ok=held.state == wanted, code=_code_of(held.state))


# Settling runs as one statement, the reservation's row locked first, then the account's
# (the order every transaction that touches both keeps). Only a held reservation is
# settled: anything else (none, or settled before) leaves every column NULL, and the
# caller reads what there is. A commit charges ``used`` (all it holds when NULL) and gives
# the rest back; a release is a settlement that charges nothing. The balances are those
# before the statement; the account's new balance comes back apart.
_SETTLE = text("""
WITH settle AS (
    UPDATE reservations
    SET state = :state, charged = LEAST(COALESCE(:used, amount), amount), settled_at = now()
    WHERE tenant_id = :tenant AND kind = :kind AND reference = :reference AND state = 'held'
    RETURNING amount, charged
), account AS (
    UPDATE credit_accounts AS a
    SET available = a.available + (s.amount - s.charged), reserved = a.reserved - s.amount,
        updated_at = now()
    FROM settle AS s
    WHERE a.tenant_id = :tenant AND a.kind = :kind
    RETURNING a.available
), entries AS (
    INSERT INTO ledger_entries (tenant_id, kind, entry, amount, reference)
    SELECT :tenant, :kind, 'commit', 0, :reference FROM settle WHERE :state = 'committed'
    UNION ALL
    SELECT :tenant, :kind, 'release', amount - charged, :reference FROM settle
    WHERE charged < amount
    ON CONFLICT DO NOTHING
)
SELECT
    (SELECT charged FROM settle) AS charged,
    (SELECT available FROM account) AS available,
    (SELECT array_agg(kind) FROM credit_accounts WHERE tenant_id = :tenant) AS kinds,
    (SELECT array_agg(available) FROM credit_accounts WHERE tenant_id = :tenant) AS availables
""").bindparams(
    bindparam("tenant", type_=PG_UUID(as_uuid=True)),
    bindparam("kind", type_=String),
    bindparam("reference", type_=String),
    bindparam("state", type_=String),
    bindparam("used", type_=BigInteger),
)
# A commit's charge, from the live grants that expire soonest (never-expiring ones last),
# locked in that order after the account; each gives what is left of the charge after the
# grants before it.
_SPEND = text("""
WITH locked AS (
    SELECT id, remaining, expires_at FROM credit_grants
    WHERE tenant_id = :tenant AND kind = :kind AND remaining > 0 AND expired_at IS NULL
    ORDER BY expires_at ASC NULLS LAST, id
    FOR UPDATE
), spend AS (
    SELECT id, LEAST(remaining, GREATEST(0, :amount - (sum(remaining) OVER before - remaining)))
        AS take
    FROM locked
    WINDOW before AS (ORDER BY expires_at ASC NULLS LAST, id ROWS UNBOUNDED PRECEDING)
)
UPDATE credit_grants AS g SET remaining = g.remaining - spend.take
FROM spend
WHERE g.id = spend.id AND spend.take > 0
""").bindparams(
    bindparam("tenant", type_=PG_UUID(as_uuid=True)),
    bindparam("kind", type_=String),
    bindparam("amount", type_=BigInteger),
)


def _balances(kinds: list[str] | None, availables: list[int] | None) -> dict[str, int]:
    return dict.fromkeys(CREDIT_KINDS, 0) | dict(
        zip(kinds or (), map(int, availables or ()), strict=True)
    )


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


@dataclass(frozen=True)
class _Usage:
    """What the usage alerts of a kind need: the period (the newest live grant's reference),
    what the live grants gave, and the thresholds already announced for that period."""

    period: str | None
    granted: int
    alerted: frozenset[int]


async def _announce_use(
    session: AsyncSession, tenant: UUID, kind: str, *, available: int, usage: _Usage
) -> None:
    if usage.period is None or usage.granted <= 0:
        return
    granted, used = usage.granted, (usage.granted - available) * 100
    for threshold in THRESHOLDS:
        if used < threshold * granted:
            return
        if threshold in usage.alerted:
            continue
        inserted = await session.scalar(
            insert(UsageAlert)
            .values(tenant_id=tenant, kind=kind, threshold=threshold, period=usage.period)
            .on_conflict_do_nothing()
            .returning(col(UsageAlert.threshold))
        )
        if inserted is None:
            continue
        fact = CreditsThresholdReached(
            kind=kind, threshold=threshold, granted=granted, available=available
        )
        await emit(session, outbox, new_event(fact, source="billing", tenant_id=tenant))


def _code_of(state: str) -> str | None:
    return {"committed": "already_committed", "released": "already_released"}.get(state)


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
