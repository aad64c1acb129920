"""The edge's OpenAPI document merges the services' and keeps their schema names apart."""

from typing import Any

import httpx

from gateway.openapi import aggregate


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
