from fastapi import FastAPI

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from planner import api, exchange_api, publishing_api, review_api
from planner.models import idempotency
from planner.settings import PlannerSettings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or PlannerSettings(),
        title="B.A.I. planner",
        routers=[
            api.router,
            exchange_api.router,
            review_api.router,
            publishing_api.router,
            review_api.review_router,
        ],
        idempotency=idempotency,
    )
