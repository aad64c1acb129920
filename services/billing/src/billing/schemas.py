"""Billing API shapes."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class BalanceRead(BaseModel):
    balances: dict[str, int]
    plan: str | None


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    entry: str
    amount: int
    reference: str
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerEntryRead]
    next_before: int | None
