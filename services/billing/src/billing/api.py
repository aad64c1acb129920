"""Billing HTTP routes: the workspace's balances and its ledger."""

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from bai_platform.db import ReadSession
from bai_platform.identity import CurrentIdentity
from billing import credits
from billing.models import LedgerEntry
from billing.schemas import BalanceRead, LedgerEntryRead, LedgerPage

router = APIRouter(prefix="/v1/billing", tags=["billing"])


@router.get("/balance")
async def balance(identity: CurrentIdentity, session: ReadSession) -> BalanceRead:
    """Credits available now, per kind."""
    current = await credits.balances(session, tenant_id=identity.tenant_id)
    return BalanceRead(balances=current, plan=None)


@router.get("/ledger")
async def ledger(
    identity: CurrentIdentity,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> LedgerPage:
    """The workspace's credit ledger, newest first (``before`` pages back)."""
    query = select(LedgerEntry).where(LedgerEntry.tenant_id == identity.tenant_id)
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    rows = list(
        (await session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1))).all()
    )
    more = len(rows) > limit
    items = [LedgerEntryRead.model_validate(r) for r in rows[:limit]]
    return LedgerPage(items=items, next_before=items[-1].id if more and items else None)
