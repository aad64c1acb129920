from fastapi import FastAPI

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from creator.api import router
from creator.chat_api import ChatCors
from creator.chat_api import router as chat_router
from creator.settings import CreatorSettings
from creator.state import lifespan


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    resolved = settings if isinstance(settings, CreatorSettings) else CreatorSettings()

    app = create_service_app(
        resolved, title="B.A.I. creator", routers=[router, chat_router], lifespan=lifespan
    )
    app.add_middleware(ChatCors)
    return app
