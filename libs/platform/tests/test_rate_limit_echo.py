"""Services answer with the RateLimit fields the edge decided, on errors too."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from bai_platform.errors import Unauthorized, install_error_handlers
from bai_platform.web import RateLimitEcho

FIELDS = {"RateLimit": '"tenant";r=7;t=42', "RateLimit-Policy": '"tenant";q=10;w=60'}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/refused")
    async def refused() -> None:
        raise Unauthorized("no")

    @app.post("/counted-here")
    async def counted_here(request: Request) -> None:
        request.state.rate_limit_headers = {"RateLimit-Policy": '"ip-auth";q=10;w=60'}
        raise Unauthorized("wrong password")

    app.add_middleware(RateLimitEcho)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http


@pytest.mark.parametrize("path", ["/ok", "/refused"])
async def test_fields_from_the_edge_come_back_on_every_answer(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=FIELDS)
    assert response.headers["ratelimit"] == FIELDS["RateLimit"]
    assert response.headers["ratelimit-policy"] == FIELDS["RateLimit-Policy"]


async def test_fields_counted_by_the_route_survive_its_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/counted-here")
    assert response.status_code == 401
    assert response.headers["ratelimit-policy"] == '"ip-auth";q=10;w=60'


async def test_no_fields_are_invented(client: httpx.AsyncClient) -> None:
    assert "ratelimit" not in (await client.get("/ok")).headers
