"""An exhausted database pool answers 503 with Retry-After, never a late 500."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr
from sqlalchemy import text

from bai_platform.db import Database, Session
from bai_platform.devstack import Stack
from bai_platform.settings import ServiceSettings
from bai_platform.testing import app_client, superuser_async_url
from bai_platform.web import create_service_app

router = APIRouter()


@router.get("/answer")
async def answer(session: Session) -> dict[str, int]:
    return {"answer": (await session.execute(text("SELECT 42"))).scalar_one()}


@pytest.fixture
async def app(infra: Stack) -> FastAPI:
    settings = ServiceSettings(
        service_name="pooltest",
        database_url=SecretStr(superuser_async_url(infra)),
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_seconds=0.5,
    )
    return create_service_app(settings, title="pool", routers=[router], verify_identity=False)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


async def test_a_request_is_served_while_the_pool_has_a_connection(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/answer")
    assert (response.status_code, response.json()) == (200, {"answer": 42})


async def test_an_exhausted_pool_answers_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    database: Database = app.state.db
    async with database.engine.connect() as held:  # the pool's only connection, kept busy
        await held.execute(text("SELECT 1"))
        response = await client.get("/answer")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "database_busy"
    assert int(response.headers["Retry-After"]) >= 1
    assert (await client.get("/answer")).status_code == 200  # and it recovers
