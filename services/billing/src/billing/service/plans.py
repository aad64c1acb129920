"""The plan catalogue: Starter, Growth and Agency unless settings say otherwise.

A plan is bought through Stripe Checkout at its ``stripe_price_id``; each paid invoice of
a subscription grants the plan's ``monthly_credits`` once (keyed by the invoice id).
Stripe events name prices, never our plans, so ``plan_for_price`` maps them back.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from bai_contracts import CREDIT_KINDS
from billing.settings import BillingSettings, PlanSettings


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    monthly_credits: dict[str, int]
    seats: int
    stripe_price_id: str


class Catalogue:
    def __init__(self, plans: dict[str, PlanSettings]) -> None:
        unknown = {k for p in plans.values() for k in p.monthly_credits} - set(CREDIT_KINDS)
        if unknown:
            raise ValueError(f"plans name unknown credit kinds: {sorted(unknown)}")
        self._plans = {
            key: Plan(
                id=key,
                name=p.name,
                monthly_credits=dict.fromkeys(CREDIT_KINDS, 0) | p.monthly_credits,
                seats=p.seats,
                stripe_price_id=p.stripe_price_id,
            )
            for key, p in plans.items()
        }
        self._by_price = {p.stripe_price_id: p for p in self._plans.values()}

    @classmethod
    def from_settings(cls, settings: BillingSettings) -> "Catalogue":
        return cls(settings.plans)

    def __iter__(self) -> Iterator[Plan]:
        return iter(self._plans.values())

    def get(self, plan_id: str) -> Plan | None:
        return self._plans.get(plan_id)

    def plan_for_price(self, price_id: str | None) -> Plan | None:
        return self._by_price.get(price_id or "")
