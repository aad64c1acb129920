"""A throwaway schema and stream on the session's real PostgreSQL and NATS; a dripping site."""

import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pydantic import SecretStr
from sqlalchemy import Column, Integer, String, Table, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bai_contracts import DEAD_LETTER_STREAM, StreamSpec
from bai_platform.consumer import InboxRecord
from bai_platform.db import Database, table_of, table_registry
from bai_platform.devstack import Stack
from bai_platform.messaging import connect, ensure_streams
from bai_platform.outbox import OutboxRecord
from bai_platform.settings import ServiceSettings
from bai_testing.plugin import superuser_async_url
from bai_testing.servers import dripping_body, served


@dataclass
class Sandbox:
    """One service-shaped corner: schema with outbox, inbox and an effects table; a stream."""

    service: str
    db: Database
    nc: NatsClient
    js: JetStreamContext
    outbox: Table
    inbox: Table
    effects: Table
    stream: StreamSpec

    def subject(self, fact: str) -> str:
        return f"bai.{self.service}.thing.{fact}.v1"


@pytest.fixture
async def sandbox(infra: Stack) -> AsyncIterator[Sandbox]:
    service = f"t{uuid4().hex[:10]}"
    # A service's tables, declared as a service declares them, in a registry of the test's own.
    registry = table_registry(service)
    base = types.new_class("SandboxTable", (SQLModel,), {"registry": registry})
    outbox = table_of(types.new_class("Outbox", (base, OutboxRecord), {"table": True}))
    inbox = table_of(types.new_class("Inbox", (base, InboxRecord), {"table": True}))
    metadata = registry.metadata
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("event_id", String(64), nullable=False),
    )
    url = superuser_async_url(infra)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{service}"'))
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    db = Database(ServiceSettings(service_name=service, database_url=SecretStr(url)))
    nc = await connect(infra.nats_url, name=service)
    stream = StreamSpec(name=service.upper(), service=service)
    await ensure_streams(nc.jetstream(), [stream, DEAD_LETTER_STREAM])
    try:
        yield Sandbox(service, db, nc, nc.jetstream(), outbox, inbox, effects, stream)
    finally:
        await nc.jetstream().delete_stream(stream.name)
        await nc.close()
        await db.dispose()


DRIP_SECONDS = 0.2  # far under any per-read timeout a test sets


def _dripping_app() -> Starlette:
    """Answers at once, then sends its body one byte every DRIP_SECONDS for a minute: every
    read succeeds, so only an overall deadline ends the exchange."""

    async def drip(request: Request) -> Response:
        body = dripping_body(every=DRIP_SECONDS, lasting=60, byte=b"x")
        return StreamingResponse(body, media_type="text/html")

    return Starlette(routes=[Route("/drip", drip, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
async def dripping() -> AsyncIterator[str]:
    """The URL of a page that drips (see _dripping_app), on 127.0.0.1."""
    async with served(_dripping_app()) as base:
        yield f"{base}/drip"
