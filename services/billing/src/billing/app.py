from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from billing import subscription_api, webhooks_api
from billing.api import router
from billing.clients.stripe import StripeBilling
from billing.settings import BillingSettings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """What billing's api holds beyond the platform's: the Stripe client
    (``app.state.stripe_billing``), closed with the app."""
    settings: BillingSettings = app.state.settings
    billing = StripeBilling(settings)
    app.state.stripe_billing = billing
    try:
        yield
    finally:
        await billing.aclose()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or BillingSettings(),
        title="B.A.I. billing",
        routers=[router, webhooks_api.router, subscription_api.router],
        lifespan=lifespan,
    )
