"""Every failure is problem+json, from one handler, without internals."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from bai_platform.errors import Conflict, install_error_handlers
from bai_platform.web import BodySizeLimit

router = APIRouter()


class Thing(BaseModel):
    name: str


class ThingExists(Conflict):
    code = "thing_exists"


@router.post("/things")
async def create_thing(thing: Thing) -> Thing:
    if thing.name == "taken":
        raise ThingExists("a thing with this name exists", extra={"name": thing.name})
    if thing.name == "boom":
        raise RuntimeError("secret internal detail")
    return thing


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=1024)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


async def test_domain_error_is_rendered_with_its_status_and_code(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", json={"name": "taken"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://bai.dev/problems/thing_exists",
        "title": "Conflict",
        "status": 409,
        "code": "thing_exists",
        "detail": "a thing with this name exists",
        "instance": "/things",
        "name": "taken",
    }


async def test_validation_error_names_the_field_but_not_the_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/things", json={"name": {"password": "hunter2-secret"}})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["errors"][0]["loc"] == ["body", "name"]
    assert "hunter2-secret" not in response.text


async def test_unexpected_error_is_a_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", json={"name": "boom"})
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret internal detail" not in response.text


async def test_unknown_route_is_a_problem_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_declared_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/things", content=b"x" * 2048, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_streamed_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 512

    response = await client.post(
        "/things", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_a_declared_length_of_thousands_of_digits_is_413_not_500(
    client: httpx.AsyncClient,
) -> None:
    # int() refuses more than 4,300 digits; a server in front may pass the header on.
    headers = {"content-type": "application/json", "content-length": "9" * 5000}
    response = await client.post("/things", content=b"{}", headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
