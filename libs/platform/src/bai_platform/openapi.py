"""Every operation of a service's document declares its error answers as problem+json.

FastAPI documents only its own 422, in a shape we never send; every error we answer is
``application/problem+json`` (``bai_platform.errors``). Frontends generate clients from the
document, so ``declare_answers`` rewrites it once per app:

- a ``Problem`` schema (RFC 9457 plus our ``code``, and ``errors`` for validation);
- on every operation: 401 and 403 (identity and access are checked on every route; even a
  public one such as login answers 401), 404 (an id in the path or the body, or a resource
  not set up yet), 429 (the limits) and 503 (a busy database pool, a dependency away),
  with ``Retry-After`` where it is sent;
- with parameters or a body, or any method but GET: 400 (not parseable: a body, a cursor)
  and 422 (not valid);
- any method that changes something: 409 (a conflict, an ``Idempotency-Key`` in flight)
  and 413 (a body too large);
- an answer the route declared itself keeps its description, and its content becomes
  problem+json.

A route whose success is a file rather than JSON (CSV, iCalendar, JSON lines) says so with
``responses=file_answer(...)``: FastAPI declares no content for a ``response_class`` without
a model, and a client (or schemathesis's content-type check) must know what it gets.

The same rewrite turns the ids a route's answer carries into OpenAPI links
(``bai_platform.openapi_links``). It is pure (a function of the document) and runs once:
the result is cached, as FastAPI caches its own.
"""

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from bai_platform.errors import PROBLEM_JSON
from bai_platform.openapi_links import with_links

PROBLEM_REF = "#/components/schemas/Problem"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error, as RFC 9457 problem details; `code` is stable, match on it.",
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "code": {"type": "string", "examples": ["validation_failed", "rate_limited"]},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "What is wrong with the request (validation_failed only).",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
ALWAYS = (401, 403, 404, 429, 503)
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
READS = ("get", "head", "options")


def file_answer(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose 200 is a file of ``media_type``, sent as text."""
    content = {media_type: {"schema": {"type": "string"}}}
    return {200: {"description": description, "content": content}}


def error_statuses(operation: dict[str, Any], method: str) -> list[int]:
    """The error answers an operation can give (see the module docstring)."""
    statuses = set(ALWAYS)
    if operation.get("parameters") or "requestBody" in operation or method != "get":
        statuses |= {400, 422}
    if method not in READS:
        statuses |= {409, 413}
    return sorted(statuses)


def problem_answer(status: int, description: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description or HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in (429, 503):
        answer["headers"] = RETRY_AFTER
    return answer


def with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the Problem schema and every operation's error answers."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # FastAPI's 422 shape: we never send it
    for path_item in document.get("paths", {}).values():
        for method in METHODS:
            if method in path_item:
                _declare(path_item[method], method)
    return document


def _declare(operation: dict[str, Any], method: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    for status in sorted(declared | set(error_statuses(operation, method))):
        own = responses.get(str(status), {}).get("description")
        phrase = HTTPStatus(status).phrase
        description = own if own and own != "Validation Error" and own != phrase else None
        responses[str(status)] = problem_answer(status, description)


def declare_answers(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document with every error answer declared and
    every id an answer carries linked to the operations that take it."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_links(with_problems(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
