"""What creator's api holds while it runs, made by its lifespan: the NATS link and the
chat's HTTP client, dispatcher and slots (chat answers synchronously: it asks billing over
NATS and the engine over HTTP in place)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from bai_platform.app_state import Platform
from bai_platform.messaging import NatsLink
from bai_platform.webhooks import WebhookDispatcher
from creator.service.chat_reply import ChatSlots
from creator.settings import CreatorSettings


@dataclass(eq=False)
class CreatorState:
    """Read with ``held(request, CreatorState)``."""

    settings: CreatorSettings
    nats: NatsLink
    chat_http: httpx.AsyncClient
    chat_dispatcher: WebhookDispatcher
    chat_slots: ChatSlots


@asynccontextmanager
async def lifespan(platform: Platform) -> AsyncIterator[CreatorState]:
    settings = platform.settings
    assert isinstance(settings, CreatorSettings)
    link = NatsLink(settings.nats_url, name="creator-api", auth=settings.nats_auth)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    async with httpx.AsyncClient(follow_redirects=False) as client:
        dispatcher = WebhookDispatcher(
            client=client,
            # A backstop: the chat's own deadline (chat.reply) answers the visitor first.
            timeout_seconds=settings.chat_deadline_seconds + 1,
            allow_private=settings.allow_private_destinations,
        )
        try:
            yield CreatorState(
                settings=settings,
                nats=link,
                chat_http=client,
                chat_dispatcher=dispatcher,
                chat_slots=ChatSlots(settings.chat_workspace_concurrency),
            )
        finally:
            stop.set()
            await task
