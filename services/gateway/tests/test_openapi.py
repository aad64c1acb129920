"""The edge's OpenAPI document merges the services' and keeps their schema names apart; the
gateway's own operations declare what they answer."""

import json
from typing import Any

import httpx
from fastapi import FastAPI
from jsonschema import Draft202012Validator

from gateway.openapi import aggregate
from gateway.service.live import Hub, _missed, frame


def _document(schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {
        "openapi": "3.1.0",
        "info": {"version": "1"},
        "paths": {
            "/v1/x/items": {
                "get": {"responses": {"200": {"content": {"application/json": {"schema": ref}}}}}
            },
            "/healthz": {"get": {}},
        },
        "components": {"schemas": {schema: {"type": "object"}}},
    }


def _services(request: httpx.Request) -> httpx.Response:
    if request.url.host == "planner":
        return httpx.Response(200, json=_document("Item"))
    return httpx.Response(503)


async def test_paths_are_merged_and_schema_names_prefixed_by_service() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_services)) as http:
        merged = await aggregate(
            http,
            own={"paths": {}},
            title="edge",
            services={"planner": "http://planner", "mining": "http://mining"},
        )
    assert list(merged["paths"]) == ["/v1/x/items"]  # health routes are not the edge's API
    schema = merged["paths"]["/v1/x/items"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    assert schema == {"$ref": "#/components/schemas/planner.Item"}
    assert "planner.Item" in merged["components"]["schemas"]
    assert merged["x-bai-unavailable"] == ["mining"]


def _as_read(frame: bytes) -> dict[str, str]:
    """One SSE frame as a client reads it: its fields by name."""
    lines = frame.decode().removesuffix("\n\n").split("\n")
    return dict(line.split(": ", 1) for line in lines)


def test_the_live_stream_declares_the_events_it_sends(app: FastAPI) -> None:
    answer = app.openapi()["paths"]["/v1/events"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/event-stream"]
    schema = Draft202012Validator(answer["content"]["text/event-stream"]["schema"])
    status = frame("PLANNER:7", "bai.planner.campaign.created.v1", {"data": {"id": 1}})
    (reset,) = _missed(Hub(retention_seconds=60, max_per_tenant=1), "t1", "PLANNER:1")
    for sent in (_as_read(status), _as_read(reset)):
        assert list(schema.iter_errors(sent)) == []
        assert isinstance(json.loads(sent["data"]), dict)
    assert list(schema.iter_errors({"id": "PLANNER:7"}))  # an event without data is not one
