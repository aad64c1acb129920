"""A service's document declares every error answer it can give, as problem+json."""

from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from bai_platform.errors import PROBLEM_JSON
from bai_platform.openapi import PROBLEM_REF, declare_answers, error_statuses

router = APIRouter()


class Thing(BaseModel):
    name: str


@router.get("/things")
async def list_things(limit: int = 10) -> list[Thing]:
    return []


@router.get("/things/{thing_id}", responses={404: {"description": "No such thing"}})
async def get_thing(thing_id: str) -> Thing:
    return Thing(name=thing_id)


@router.post("/things", status_code=201)
async def create_thing(thing: Thing) -> Thing:
    return thing


@router.get("/ping")
async def ping() -> dict[str, str]:
    return {"ping": "pong"}


def _document() -> dict[str, Any]:
    app = FastAPI()
    app.include_router(router)
    declare_answers(app)
    return app.openapi()


def _errors(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    responses = document["paths"][path][method]["responses"]
    return {code: answer for code, answer in responses.items() if int(code) >= 400}


def test_each_operation_declares_what_its_shape_can_fail_with() -> None:
    document = _document()
    assert sorted(_errors(document, "get", "/ping")) == ["401", "403", "404", "429", "503"]
    assert sorted(_errors(document, "get", "/things")) == [
        "400", "401", "403", "404", "422", "429", "503",
    ]  # fmt: skip
    assert sorted(_errors(document, "post", "/things")) == [
        "400", "401", "403", "404", "409", "413", "422", "429", "503",
    ]  # fmt: skip


def test_every_error_is_problem_json_with_the_problem_schema() -> None:
    document = _document()
    for path, item in document["paths"].items():
        for method in item:
            for code, answer in _errors(document, method, path).items():
                assert answer["content"] == {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}, (
                    f"{method} {path} {code}"
                )
    problem = document["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "code"]


def test_fastapis_own_validation_shape_is_gone_and_a_routes_own_words_stay() -> None:
    document = _document()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(document)
    assert _errors(document, "get", "/things/{thing_id}")["404"]["description"] == "No such thing"
    assert _errors(document, "get", "/things")["422"]["description"] == "Unprocessable Entity"


def test_waiting_answers_say_when_to_come_back() -> None:
    answers = _errors(_document(), "get", "/ping")
    assert "Retry-After" in answers["429"]["headers"]
    assert "Retry-After" in answers["503"]["headers"]
    assert "headers" not in answers["401"]


def test_the_document_is_made_once() -> None:
    app = FastAPI()
    app.include_router(router)
    declare_answers(app)
    assert app.openapi() is app.openapi()


def test_statuses_follow_input_and_method() -> None:
    assert error_statuses({}, "get") == [401, 403, 404, 429, 503]
    assert 422 in error_statuses({"parameters": [{"in": "query", "name": "q"}]}, "get")
    assert error_statuses({}, "delete") == [400, 401, 403, 404, 409, 413, 422, 429, 503]
