"""A busy or absent database answers 503 with Retry-After, never a late 500.

Busy means: the pool's connections are all in use for longer than the pool timeout, or
PostgreSQL refuses a new connection for want of slots. Both happen on the session's real
PostgreSQL: a pool of one held by another session, and a role whose connection limit is 0.
Contention (a statement timeout, a deadlock) is busy too: rolled back, worth retrying.
Absent means: nothing listens (a restart), or the server ends the session mid-query (a
shutdown: ``pg_terminate_backend`` sends the same ``admin_shutdown``). A pooled connection
the server dropped while it sat idle is pinged and replaced unseen; one dropped while in
steady use (not pinged, to save a round trip per request) fails one request with a 503.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import jsonschema
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from bai_platform.app_state import platform_of
from bai_platform.db import Database, Session
from bai_platform.devstack import Stack
from bai_platform.errors import database_trouble
from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from bai_testing.plugin import app_client, superuser_async_url

router = APIRouter()


@router.get("/answer")
async def answer(session: Session) -> dict[str, int]:
    return {"answer": (await session.execute(text("SELECT 42"))).scalar_one()}


@router.get("/slow")
async def slow(session: Session) -> dict[str, int]:
    await session.execute(text("SELECT pg_sleep(30) /* slow-route */"))
    return {"answer": 42}


def _app(
    database_url: str,
    *,
    pool_timeout: float = 0.5,
    statement_timeout_ms: int = 15_000,
    ping_after_idle: float = 5.0,
) -> FastAPI:
    settings = ServiceSettings(
        service_name="pooltest",
        database_url=SecretStr(database_url),
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_seconds=pool_timeout,
        db_statement_timeout_ms=statement_timeout_ms,
        db_ping_after_idle_seconds=ping_after_idle,
    )
    return create_service_app(settings, title="pool", routers=[router], verify_identity=False)


@pytest.fixture
async def app(infra: Stack) -> FastAPI:
    return _app(superuser_async_url(infra))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


@pytest.fixture
async def refused_url(infra: Stack) -> AsyncIterator[str]:
    """The URL of a role PostgreSQL lets in on no connection (CONNECTION LIMIT 0)."""
    role = f"full_{uuid4().hex[:10]}"
    admin = create_async_engine(superuser_async_url(infra), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
    try:
        yield superuser_async_url(infra).replace("postgres@", f"{role}@", 1)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP ROLE "{role}"'))
        await admin.dispose()


def _assert_busy(response: httpx.Response, code: str = "database_busy") -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert int(response.headers["Retry-After"]) >= 1


async def test_a_request_is_served_while_the_pool_has_a_connection(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/answer")
    assert (response.status_code, response.json()) == (200, {"answer": 42})


async def test_an_exhausted_pool_answers_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    database: Database = platform_of(app).db
    async with database.engine.connect() as held:  # the pool's only connection, kept busy
        await held.execute(text("SELECT 1"))
        response = await client.get("/answer")
    _assert_busy(response)
    assert (await client.get("/answer")).status_code == 200  # and it recovers


async def test_retry_after_is_the_pool_timeout_rounded_up(infra: Stack) -> None:
    app = _app(superuser_async_url(infra), pool_timeout=2.5)
    async with app_client(app) as client, platform_of(app).db.engine.connect() as held:
        await held.execute(text("SELECT 1"))
        response = await client.get("/answer")
    _assert_busy(response)
    assert response.headers["Retry-After"] == "3"


async def test_a_connection_postgresql_refuses_answers_503(refused_url: str) -> None:
    async with app_client(_app(refused_url)) as client:
        response = await client.get("/answer")
    _assert_busy(response)


def _nothing_listens() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"


async def test_a_database_nobody_listens_on_answers_503() -> None:
    async with app_client(_app(_nothing_listens())) as client:
        response = await client.get("/answer")
    _assert_busy(response, "database_unavailable")


async def _terminate(infra: Stack, marker: str) -> int:
    """End the sessions whose query carries ``marker`` (or whose pid it is), as a shutdown
    would; how many."""
    admin = create_async_engine(superuser_async_url(infra), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            ended = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE (query LIKE :marker OR pid::text = :pid) AND pid <> pg_backend_pid()"
                ),
                {"marker": f"%{marker}%", "pid": marker},
            )
            return int(ended.scalar_one())
    finally:
        await admin.dispose()


async def test_a_session_the_server_ends_mid_query_answers_503(infra: Stack) -> None:
    async with app_client(_app(superuser_async_url(infra))) as client:
        request = asyncio.create_task(client.get("/slow"))
        async with asyncio.timeout(10):
            while not await _terminate(infra, "slow-route"):
                await asyncio.sleep(0.05)
        response = await request
        _assert_busy(response, "database_unavailable")
        assert (await client.get("/answer")).status_code == 200  # a new connection serves


async def _drop_the_pooled_connection(infra: Stack, app: FastAPI) -> None:
    async with platform_of(app).db.engine.connect() as conn:  # the pool's only connection
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert await _terminate(infra, str(pid)) == 1


async def test_a_pooled_connection_dropped_while_idle_is_replaced_unseen(infra: Stack) -> None:
    app = _app(superuser_async_url(infra), ping_after_idle=0.05)
    async with app_client(app) as client:
        assert (await client.get("/answer")).status_code == 200
        await _drop_the_pooled_connection(infra, app)
        await asyncio.sleep(0.1)  # idle past the threshold: pinged, found gone, replaced
        assert (await client.get("/answer")).status_code == 200


async def test_with_a_ping_before_every_use_a_dropped_connection_is_never_seen(
    infra: Stack,
) -> None:
    app = _app(superuser_async_url(infra), ping_after_idle=0)
    async with app_client(app) as client:
        assert (await client.get("/answer")).status_code == 200
        await _drop_the_pooled_connection(infra, app)
        assert (await client.get("/answer")).status_code == 200


async def test_a_connection_in_steady_use_that_was_dropped_fails_one_request_with_503(
    infra: Stack,
) -> None:
    """Not pinged (it was just used): the request on it is 503 database_unavailable, and
    the pool replaces it, so the next request is served."""
    app = _app(superuser_async_url(infra), ping_after_idle=60)
    async with app_client(app) as client:
        assert (await client.get("/answer")).status_code == 200
        await _drop_the_pooled_connection(infra, app)
        _assert_busy(await client.get("/answer"), "database_unavailable")
        assert (await client.get("/answer")).status_code == 200


async def test_a_statement_that_runs_out_of_time_answers_503(infra: Stack) -> None:
    async with app_client(_app(superuser_async_url(infra), statement_timeout_ms=200)) as client:
        response = await client.get("/slow")
        _assert_busy(response)
        assert "nothing was changed" in response.json()["detail"]
        assert (await client.get("/answer")).status_code == 200


class _Driver(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "reason"),
    [
        ("53300", "no_slots"),  # too_many_connections
        ("57P03", "no_slots"),  # cannot_connect_now: starting up or shutting down
        ("57014", "contention"),  # statement_timeout
        ("40P01", "contention"),  # deadlock_detected
        ("40001", "contention"),  # serialization_failure
        ("55P03", "contention"),  # lock_not_available
        ("57P01", "unreachable"),  # admin_shutdown
        ("57P02", "unreachable"),  # crash_shutdown
        ("08003", "unreachable"),  # connection_does_not_exist: closed during the handshake
        ("08006", "unreachable"),  # connection_failure
        ("23505", None),  # unique_violation: a defect or a domain conflict, never a 503
        ("42P01", None),  # undefined_table
        (None, None),
    ],
)
def test_which_driver_errors_are_the_database_away_for_a_moment(
    sqlstate: str | None, reason: str | None
) -> None:
    error = DBAPIError("SELECT 1", {}, _Driver(sqlstate))
    assert database_trouble(error) == reason


class _ClaimsAConnectionFirst:
    """A middleware that uses the database before the route, as the idempotency claim does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            async with platform_of(scope["app"]).db.transaction() as session:
                await session.execute(text("SELECT 1"))
        await self.app(scope, receive, send)


async def test_a_pool_wait_in_a_middleware_is_503_too(infra: Stack) -> None:
    app = _app(superuser_async_url(infra))
    app.add_middleware(_ClaimsAConnectionFirst)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
        platform_of(app).db.engine.connect() as held,
    ):
        await held.execute(text("SELECT 1"))
        response = await client.get("/answer")
    _assert_busy(response)


def _declared(document: dict[str, Any], status: int) -> dict[str, Any]:
    return dict(document["paths"]["/answer"]["get"]["responses"][str(status)])


async def test_the_503_fits_what_the_api_document_declares(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with platform_of(app).db.engine.connect() as held:
        await held.execute(text("SELECT 1"))
        response = await client.get("/answer")
    document = app.openapi()
    declared = _declared(document, 503)
    schema = declared["content"][response.headers["content-type"]]["schema"]
    resolver_root = {**schema, "components": document["components"]}
    jsonschema.validate(response.json(), resolver_root)
    assert set(declared["headers"]) == {"Retry-After"}
    jsonschema.validate(
        int(response.headers["Retry-After"]), declared["headers"]["Retry-After"]["schema"]
    )
