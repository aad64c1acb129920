"""What billing's api holds while it runs, made by its lifespan: the Stripe client
(``held(request, StripeBilling)``), closed with the app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bai_platform.app_state import Platform
from billing.clients.stripe import StripeBilling
from billing.settings import BillingSettings


@asynccontextmanager
async def lifespan(platform: Platform) -> AsyncIterator[StripeBilling]:
    settings = platform.settings
    assert isinstance(settings, BillingSettings)
    billing = StripeBilling(settings)
    try:
        yield billing
    finally:
        await billing.aclose()
