"""OWASP API1: every route with an id, walked from the edge's OpenAPI, with another
workspace's ids and our own token: each is 404. The walk grows with every service: a new
path parameter fails this test until it gets a source of ids below."""

from typing import Any

import httpx
import pytest

from .conftest import Account, sign_up

pytestmark = pytest.mark.integration

# Routes not authenticated by a workspace token (a signed callback) are covered elsewhere.
NOT_TENANT_SCOPED = {"/v1/webhooks/n8n/{job_id}"}
# A valid body where the route wants one, so that the handler (not validation) answers.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/auth/members/{user_id}"): {"role": "viewer"},
}


async def _owned_by(edge: httpx.AsyncClient, owner: Account) -> dict[str, str]:
    """One id of each kind that belongs to ``owner``'s workspace."""
    campaign = await edge.post("/v1/planner/campaigns", json={"name": "B's"}, headers=owner.headers)
    key = await edge.post(
        "/v1/auth/api-keys", json={"name": "B's", "scopes": ["planner:read"]}, headers=owner.headers
    )
    invitation = await edge.post(
        "/v1/auth/invitations", json={"email": "someone@example.com"}, headers=owner.headers
    )
    me = await edge.get("/v1/auth/me", headers=owner.headers)
    return {
        "campaign_id": campaign.json()["id"],
        "key_id": key.json()["id"],
        "invitation_id": invitation.json()["id"],
        "user_id": me.json()["user_id"],
    }


def _operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, operations in document["paths"].items()
        if "{" in path and path not in NOT_TENANT_SCOPED
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    ]


async def test_another_workspaces_ids_are_404_on_every_route(
    edge: httpx.AsyncClient, account: Account
) -> None:
    document = (await edge.get("/v1/openapi.json")).json()
    assert "/v1/planner/campaigns" in document["paths"]
    assert "x-bai-unavailable" not in document
    other_ids = await _owned_by(edge, await sign_up(edge, workspace="Other"))
    operations = _operations(document)
    assert operations, "the walk found no route with an id"
    for method, path in operations:
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        missing = [p for p in params if p not in other_ids]
        assert not missing, f"{method.upper()} {path}: add a source of {missing} ids to this test"
        url = path.format(**other_ids)
        response = await edge.request(
            method, url, headers=account.headers, json=BODIES.get((method, path))
        )
        assert response.status_code == 404, f"{method.upper()} {url}: {response.status_code}"
