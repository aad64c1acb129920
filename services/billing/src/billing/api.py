"""Billing HTTP routes: the workspace's balances, usage and ledger."""

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlmodel import col

from bai_contracts import CREDIT_KINDS
from bai_platform.db import PG_BIGINT_MAX, ReadSession
from bai_platform.identity import CurrentIdentity
from billing.models import CreditAccount, CreditGrant, LedgerEntry
from billing.schemas import BalanceRead, KindUsage, LedgerEntryRead, LedgerPage, UsageRead
from billing.service import credits
from billing.service.stripe_events import in_force

router = APIRouter(prefix="/v1/billing", tags=["billing"])


@router.get("/balance")
async def balance(identity: CurrentIdentity, session: ReadSession) -> BalanceRead:
    """Credits available now, per kind."""
    current = await credits.balances(session, tenant_id=identity.tenant_id)
    plan = await in_force(session, identity.tenant_id)
    return BalanceRead(
        balances=current,
        plan=plan[0] if plan and plan[0] != "none" else None,
        subscription_status=plan[1] if plan else "none",
    )


@router.get("/usage")
async def usage(identity: CurrentIdentity, session: ReadSession) -> UsageRead:
    """Per kind: what live grants gave, what is held by running jobs, what is used and left,
    and the next expiry."""
    tenant = identity.tenant_id
    accounts = {
        row.kind: row
        for row in await session.scalars(
            select(CreditAccount).where(col(CreditAccount.tenant_id) == tenant)
        )
    }
    live = (col(CreditGrant.tenant_id) == tenant, col(CreditGrant.expired_at).is_(None))
    granted = dict(
        (
            await session.execute(
                select(
                    col(CreditGrant.kind),
                    func.sum(col(CreditGrant.amount) - col(CreditGrant.clawed_back)),
                )
                .where(*live)
                .group_by(col(CreditGrant.kind))
            )
        ).all()
    )
    expiring = {
        kind: (at, int(left))
        for kind, at, left in (
            await session.execute(
                select(
                    col(CreditGrant.kind), col(CreditGrant.expires_at), col(CreditGrant.remaining)
                )
                .where(
                    *live, col(CreditGrant.expires_at).is_not(None), col(CreditGrant.remaining) > 0
                )
                .order_by(col(CreditGrant.kind), col(CreditGrant.expires_at).desc())
            )
        ).all()
    }  # the soonest per kind wins: rows come latest first
    kinds = {}
    for kind in CREDIT_KINDS:
        account = accounts.get(kind)
        available = int(account.available) if account else 0
        held = int(account.reserved) if account else 0
        total = int(granted.get(kind) or 0)
        used = max(total - available - held, 0)
        at, left = expiring.get(kind, (None, 0))
        kinds[kind] = KindUsage(
            granted=total,
            used=used,
            held=held,
            available=available,
            percent_used=round(100 * (used + held) / total, 1) if total else 0.0,
            next_expiry_at=at,
            next_expiry_amount=left,
        )
    return UsageRead(kinds=kinds)


@router.get("/ledger")
async def ledger(
    identity: CurrentIdentity,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    before: Annotated[int | None, Query(ge=1, le=PG_BIGINT_MAX)] = None,
) -> LedgerPage:
    """The workspace's credit ledger, newest first (``before`` pages back)."""
    query = select(LedgerEntry).where(col(LedgerEntry.tenant_id) == identity.tenant_id)
    if before is not None:
        query = query.where(col(LedgerEntry.id) < before)
    rows = list(
        (await session.scalars(query.order_by(col(LedgerEntry.id).desc()).limit(limit + 1))).all()
    )
    more = len(rows) > limit
    items = [LedgerEntryRead.model_validate(r) for r in rows[:limit]]
    return LedgerPage(items=items, next_before=items[-1].id if more and items else None)
