"""The edge's one API document (``/v1/openapi.json``): every operation of every service
declares its error answers as problem+json, and every reference in it resolves, so a
client generated from it knows every answer it can get."""

import json
from typing import Any

import httpx
import pytest

from bai_platform.errors import PROBLEM_JSON

pytestmark = pytest.mark.integration

METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def test_every_operation_declares_its_errors_as_problem_json(
    edge: httpx.AsyncClient,
) -> None:
    document = (await edge.get("/v1/openapi.json")).json()
    assert "x-bai-unavailable" not in document
    operations = _operations(document)
    assert len(operations) > 50
    undeclared = []
    for method, path, operation in operations:
        errors = {int(code): a for code, a in operation["responses"].items() if int(code) >= 400}
        if not {401, 403, 404, 429, 503} <= errors.keys():
            undeclared.append(f"{method.upper()} {path}: {sorted(errors)}")
        for code, answer in errors.items():
            if list(answer.get("content", {})) != [PROBLEM_JSON]:
                undeclared.append(f"{method.upper()} {path} {code}: {answer.get('content')}")
    assert undeclared == []


async def test_every_reference_resolves(edge: httpx.AsyncClient) -> None:
    document = (await edge.get("/v1/openapi.json")).json()
    text = json.dumps(document)
    references = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    schemas = document["components"]["schemas"]
    dangling = [
        ref for ref in references if ref.removeprefix("#/components/schemas/") not in schemas
    ]
    assert references
    assert dangling == []
    assert "HTTPValidationError" not in text
