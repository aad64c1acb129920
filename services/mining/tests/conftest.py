"""Mining test fixtures: the app on the session's real database, trusted identities, a
stand-in for billing's quota answers, the workflows' secret box, and a hostile website."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from sqlalchemy import update
from sqlmodel import col
from starlette.types import Message, Receive, Scope, Send

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.messaging import connect
from bai_platform.secrets import fernet_for
from bai_testing.billing import BillingStandIn, billing_stand_in
from bai_testing.plugin import settings_for, trusting_client
from bai_testing.servers import served
from mining.app import create_app
from mining.models import ExtractionJob
from mining.service.workflows import SECRETS_PURPOSE
from mining.settings import MiningSettings


@pytest.fixture(scope="session")
def mining_settings(migrated: Stack) -> MiningSettings:
    return settings_for(MiningSettings, migrated, "mining")


@pytest.fixture(scope="session")
def identity_audience(mining_settings: MiningSettings) -> str:
    """The audience ``identity_for`` mints for: the one this service accepts."""
    return mining_settings.identity_audience


@pytest.fixture
async def client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(mining_settings), signing_key) as http:
        yield http


@pytest.fixture
async def private_client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a deployment that allows private destinations (stand-in workflows listen
    on 127.0.0.1)."""
    allowing = mining_settings.model_copy(update={"allow_private_destinations": True})
    async with trusting_client(create_app(allowing), signing_key) as http:
        yield http


@pytest.fixture(scope="session")
async def mining_db(mining_settings: MiningSettings) -> AsyncIterator[Database]:
    database = Database(mining_settings)
    try:
        yield database
    finally:
        await database.dispose()


async def end_jobs_of(db: Database, tenant: UUID) -> None:
    """End the jobs ``tenant`` has queued or running, so later tests' passes leave them be."""
    async with db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(
                col(ExtractionJob.tenant_id) == tenant,
                col(ExtractionJob.state).in_(("queued", "running")),
            )
            .values(state="cancelled", problems=["ended by the test"])
        )


@pytest.fixture
async def end_the_tests_jobs(mining_db: Database, tenant: UUID) -> AsyncIterator[None]:
    """Jobs the test left queued or running are ended, so later tests' passes leave them be."""
    yield
    await end_jobs_of(mining_db, tenant)


@pytest.fixture
def workflow_box(mining_settings: MiningSettings) -> Fernet:
    """What the workflows' secrets are encrypted with."""
    return fernet_for(mining_settings.secret_key, SECRETS_PURPOSE)


# ---- billing, stood in -------------------------------------------------------------------
@pytest.fixture
async def nats_client(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="mining-tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def billing(nats_client: NatsClient) -> AsyncIterator[BillingStandIn]:
    balances = {"extraction_pages": 480}
    async with billing_stand_in(nats_client, balances=balances, reason="20 needed, 3 left") as b:
        yield b


# ---- a hostile website -------------------------------------------------------------------
# Quadratic for the old tag counter: hours of CPU on the event loop.
BOMB_PAGE = "</p>" * 501 + "<a" + "b" * 2_000_000
HOSTILE_HOME = """<html><body><a href="/bomb">Bomb</a> <a href="/tarpit">Slow</a>
<a href="/busy">Busy</a> <a href="http://x:99999/">Bad port</a> <a href="http://[::1/">Bad</a>
</body></html>"""


@contextlib.asynccontextmanager
async def hostile_site() -> AsyncIterator[str]:
    """Serve a site whose home links to a regex-bomb page (``/bomb``), a tarpit that drips
    a byte every 0.2 s until the client goes (``/tarpit``), a 429 with ``Retry-After: ²``
    (``/busy``) and two malformed URLs; yields its base URL."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/tarpit":
            await _drip(receive, send)
            return
        status, headers, body = 200, [(b"content-type", b"text/html")], b""
        if path == "/":
            body = HOSTILE_HOME.encode()
        elif path == "/bomb":
            body = BOMB_PAGE.encode()
        elif path == "/busy":
            status, headers = 429, [*headers, (b"retry-after", "²".encode("latin-1"))]
        else:
            status = 404
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async with served(app) as base:
        yield base


async def _drip(receive: Receive, send: Send) -> None:
    """An answer that never ends while the client listens (at most ten minutes)."""
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/html")],
    }
    await send(start)
    for _ in range(3000):
        try:
            message = await asyncio.wait_for(receive(), 0.2)
        except TimeoutError:
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            continue
        if message["type"] == "http.disconnect":
            return
    await send({"type": "http.response.body", "body": b""})
