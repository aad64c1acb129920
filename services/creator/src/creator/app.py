import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from bai_platform.messaging import NatsLink
from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from bai_platform.webhooks import WebhookDispatcher
from creator.api import router
from creator.chat_api import ChatCors
from creator.chat_api import router as chat_router
from creator.service.chat_reply import ChatSlots
from creator.settings import CreatorSettings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """What creator's api holds beyond the platform's: the NATS link and the chat's HTTP
    client, dispatcher and slots."""
    settings: CreatorSettings = app.state.settings
    # Chat answers synchronously: it asks billing (NATS) and the engine (HTTP) in place.
    link = NatsLink(settings.nats_url, name="creator-api", auth=settings.nats_auth)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    async with httpx.AsyncClient(follow_redirects=False) as client:
        app.state.nats, app.state.chat_http = link, client
        app.state.chat_dispatcher = WebhookDispatcher(
            client=client,
            # A backstop: the chat's own deadline (chat.reply) answers the visitor first.
            timeout_seconds=settings.chat_deadline_seconds + 1,
            allow_private=settings.allow_private_destinations,
        )
        app.state.chat_slots = ChatSlots(settings.chat_workspace_concurrency)
        try:
            yield
        finally:
            stop.set()
            await task


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    resolved = settings if isinstance(settings, CreatorSettings) else CreatorSettings()

    app = create_service_app(
        resolved, title="B.A.I. creator", routers=[router, chat_router], lifespan=lifespan
    )
    app.add_middleware(ChatCors)
    return app
