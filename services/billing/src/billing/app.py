from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bai_platform.app_state import Platform
from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from billing import subscription_api, webhooks_api
from billing.api import router
from billing.clients.stripe import StripeBilling
from billing.settings import BillingSettings


@asynccontextmanager
async def lifespan(platform: Platform) -> AsyncIterator[StripeBilling]:
    """What billing's api holds beyond the platform's: the Stripe client
    (``held(request, StripeBilling)``), closed with the app."""
    settings = platform.settings
    assert isinstance(settings, BillingSettings)
    billing = StripeBilling(settings)
    try:
        yield billing
    finally:
        await billing.aclose()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or BillingSettings(),
        title="B.A.I. billing",
        routers=[router, webhooks_api.router, subscription_api.router],
        lifespan=lifespan,
    )
