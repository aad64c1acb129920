from fastapi import FastAPI

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from mining.api import router
from mining.models import idempotency
from mining.settings import MiningSettings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or MiningSettings(),
        title="B.A.I. mining",
        routers=[router],
        idempotency=idempotency,
    )
