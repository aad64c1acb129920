"""The edge's one API document (``/v1/openapi.json``): every operation of every service
declares its error answers as problem+json, and every reference and link in it resolves,
so a client generated from it knows every answer it can get and where an id leads."""

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


def _target(operation_ref: str) -> tuple[str, str]:
    """The (method, path) an ``operationRef`` of the form ``#/paths/<path>/<method>`` names."""
    pointer, method = operation_ref.removeprefix("#/paths/").rsplit("/", 1)
    return method, pointer.replace("~1", "/").replace("~0", "~")


def _body_members(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    content = operation.get("requestBody", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    schema = document["components"]["schemas"].get(ref.removeprefix("#/components/schemas/"))
    return set((schema or {}).get("properties", {}))


def _link_faults(document: dict[str, Any], link: dict[str, Any]) -> list[str]:
    method, path = _target(link["operationRef"])
    target = document["paths"].get(path, {}).get(method)
    if target is None:
        return [f"no operation {method.upper()} {path}"]
    names = {parameter["name"] for parameter in target.get("parameters", [])}
    unknown = set(link.get("parameters", {})) - names
    unknown |= set(link.get("requestBody", {})) - _body_members(document, target)
    return [f"{method.upper()} {path} takes no {sorted(unknown)}"] if unknown else []


async def test_every_link_leads_to_an_operation_that_takes_what_it_fills(
    edge: httpx.AsyncClient,
) -> None:
    document = (await edge.get("/v1/openapi.json")).json()
    faults, count = [], 0
    for method, path, operation in _operations(document):
        for answer in operation["responses"].values():
            for name, link in answer.get("links", {}).items():
                count += 1
                faults += [
                    f"{method.upper()} {path} {name}: {f}" for f in _link_faults(document, link)
                ]
    assert count >= 25
    assert faults == []


FILES = {
    ("get", "/v1/planner/campaigns/{campaign_id}/calendar.csv"): "text/csv",
    ("get", "/v1/planner/campaigns/{campaign_id}/calendar.ics"): "text/calendar",
    ("get", "/v1/mining/jobs/{job_id}/results.csv"): "text/csv",
    ("get", "/v1/mining/jobs/{job_id}/results.jsonl"): "application/x-ndjson",
    ("get", "/v1/events"): "text/event-stream",
}


async def test_every_answer_with_a_body_declares_its_media_type(
    edge: httpx.AsyncClient,
) -> None:
    """Files and the live stream too: FastAPI declares none for a route's own response class."""
    document = (await edge.get("/v1/openapi.json")).json()
    undeclared, files = [], {}
    for method, path, operation in _operations(document):
        for code, answer in operation["responses"].items():
            if code != "204" and not answer.get("content"):
                undeclared.append(f"{method.upper()} {path} {code}")
        if (method, path) in FILES:
            files[(method, path)] = list(operation["responses"]["200"].get("content", {}))
    assert undeclared == []
    assert files == {operation: [media_type] for operation, media_type in FILES.items()}
