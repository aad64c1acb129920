from fastapi import FastAPI

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from creator.api import router
from creator.settings import CreatorSettings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or CreatorSettings(), title="B.A.I. creator", routers=[router]
    )
