"""One OpenAPI document for the edge: every service's ``/v1`` paths, fetched and merged.

Schema names are prefixed with their service (``planner.CampaignRead``) so two services may
use the same name. A service that does not answer is listed under ``x-bai-unavailable``
instead of failing the whole document. In production, services close their own docs, so
this document is empty there unless docs are enabled.
"""

import asyncio
import json
from typing import Any

import httpx

REF_PREFIX = "#/components/schemas/"


async def aggregate(
    http: httpx.AsyncClient, *, own: dict[str, Any], services: dict[str, str], title: str
) -> dict[str, Any]:
    documents = await asyncio.gather(*(_fetch(http, url) for url in services.values()))
    merged: dict[str, Any] = {
        "openapi": own.get("openapi", "3.1.0"),
        "info": {"title": title, "version": own.get("info", {}).get("version", "0.1.0")},
        "paths": {},
        "components": {"schemas": {}},
    }
    unavailable = []
    for name, document in zip(["gateway", *services], [own, *documents], strict=True):
        if document is None:
            unavailable.append(name)
            continue
        _merge(merged, name, document)
    if unavailable:
        merged["x-bai-unavailable"] = unavailable
    return merged


async def _fetch(http: httpx.AsyncClient, base_url: str) -> dict[str, Any] | None:
    try:
        response = await http.get(f"{base_url}/openapi.json", timeout=3.0)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return document


def _merge(merged: dict[str, Any], service: str, document: dict[str, Any]) -> None:
    renamed = _prefixed(document, service)
    for path, operations in renamed.get("paths", {}).items():
        if path.startswith("/v1/"):
            merged["paths"][path] = operations
    merged["components"]["schemas"].update(renamed.get("components", {}).get("schemas", {}))


def _prefixed(document: dict[str, Any], service: str) -> dict[str, Any]:
    """The document with every schema name (and reference to one) prefixed by ``service``."""
    text = json.dumps(document).replace(f'"{REF_PREFIX}', f'"{REF_PREFIX}{service}.')
    renamed: dict[str, Any] = json.loads(text)
    schemas = renamed.get("components", {}).get("schemas", {})
    if schemas:
        renamed["components"]["schemas"] = {f"{service}.{k}": v for k, v in schemas.items()}
    return renamed
