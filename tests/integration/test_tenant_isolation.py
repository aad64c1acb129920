"""OWASP API1: every route with an id, walked from the edge's OpenAPI, with another
workspace's ids and our own token: each is 404. The walk grows with every service: a new
path parameter fails this test until it gets a source of ids below."""

import asyncio
from typing import Any

import httpx
import pytest

from .conftest import Account, new_brand, sign_up

pytestmark = pytest.mark.integration

# Routes not authenticated by a workspace token (a signed callback, a signed client review
# link) are covered by their own tests.
NOT_TENANT_SCOPED = {
    "/v1/webhooks/n8n/{job_id}",
    "/v1/planner/review/{token}",
    "/v1/planner/review/{token}/posts/{post_id}",
    # A visitor's own conversation (visitor tokens; tested in test_chat_at_the_edge.py and
    # creator's test_chat.py): members of any workspace are refused there with 403.
    "/v1/creator/chat/{conversation_id}/messages",
}
# A valid body where the route wants one, so that the handler (not validation) answers.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/auth/members/{user_id}"): {"role": "viewer"},
    ("patch", "/v1/planner/brands/{brand_id}"): {"name": "Mine now"},
    ("patch", "/v1/planner/campaigns/{campaign_id}"): {"name": "Mine now"},
    ("post", "/v1/planner/campaigns/{campaign_id}/schedule"): {"month": "2026-12"},
    ("post", "/v1/planner/campaigns/{campaign_id}/review-links"): {"month": "2026-12"},
    ("patch", "/v1/planner/posts/{post_id}"): {"text": "Mine now"},
    ("post", "/v1/planner/posts/{post_id}/transitions"): {"to": "in_review"},
    ("post", "/v1/planner/posts/{post_id}/regenerate"): {"note": "mine"},
    ("patch", "/v1/creator/widgets/{widget_id}"): {"name": "Mine now"},
}


async def _owned_by(edge: httpx.AsyncClient, owner: Account) -> dict[str, str]:
    """One id of each kind that belongs to ``owner``'s workspace."""
    brand_id = await new_brand(edge, owner)
    body = {
        "brand_id": brand_id,
        "name": "B's",
        "channels": ["instagram"],
        "starts_on": "2026-12-01",
        "ends_on": "2026-12-31",
    }
    campaign = await edge.post("/v1/planner/campaigns", json=body, headers=owner.headers)
    campaign_id = campaign.json()["id"]
    await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/schedule",
        json={"month": "2026-12"},
        headers=owner.headers,
    )
    post = await _first_post_with_a_job(edge, owner, campaign_id)
    schedule = await edge.post(
        "/v1/mining/schedules",
        json={
            "name": "B's weekly",
            "cron": "0 9 * * 1",
            "job": {"source": {"type": "website", "urls": ["https://b.example/"]}},
        },
        headers=owner.headers,
    )
    widget = await edge.post(
        "/v1/creator/widgets",
        json={"name": "B's site", "allowed_origins": ["https://b.example"]},
        headers=owner.headers,
    )
    link = await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/review-links",
        json={"month": "2026-12"},
        headers=owner.headers,
    )
    key = await edge.post(
        "/v1/auth/api-keys", json={"name": "B's", "scopes": ["planner:read"]}, headers=owner.headers
    )
    invitation = await edge.post(
        "/v1/auth/invitations", json={"email": "someone@example.com"}, headers=owner.headers
    )
    me = await edge.get("/v1/auth/me", headers=owner.headers)
    for answer in (campaign, schedule, widget, link, key, invitation, me):
        assert answer.status_code in {200, 201}, (answer.request.url, answer.text)
    return {
        "brand_id": brand_id,
        "campaign_id": campaign_id,
        "post_id": post["id"],
        "job_id": post["generation_job_id"],
        "link_id": link.json()["id"],
        "widget_id": widget.json()["id"],
        "schedule_id": schedule.json()["id"],
        "version": "1",
        "key_id": key.json()["id"],
        "invitation_id": invitation.json()["id"],
        "user_id": me.json()["user_id"],
    }


async def _first_post_with_a_job(
    edge: httpx.AsyncClient, owner: Account, campaign_id: str
) -> dict[str, Any]:
    """The campaign's first post once creator has taken its generation request."""
    url = f"/v1/planner/campaigns/{campaign_id}/posts"
    async with asyncio.timeout(20):
        while True:
            items = (await edge.get(url, headers=owner.headers)).json()["items"]
            if items and items[0]["generation_job_id"]:
                post: dict[str, Any] = items[0]
                return post
            await asyncio.sleep(0.25)


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
