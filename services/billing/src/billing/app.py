from fastapi import FastAPI

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from billing import subscription_api, webhooks_api
from billing.api import router
from billing.settings import BillingSettings
from billing.state import lifespan


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or BillingSettings(),
        title="B.A.I. billing",
        routers=[router, webhooks_api.router, subscription_api.router],
        lifespan=lifespan,
    )
