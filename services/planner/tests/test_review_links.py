"""Client review links: what a link puts in review, what the client sees and decides, refusals."""

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from sqlalchemy import func, select, update
from sqlmodel import col

from bai_contracts import (
    PostGenerationRequested,
    ReviewLinkExpiring,
)
from bai_platform.db import Database
from bai_platform.envelope import Envelope
from bai_platform.identity import IDENTITY_HEADER
from planner.models import Post, PostTransition, ReviewLink
from planner.service.reviews import remind_expiring

from .conftest import new_campaign, posts_of, schedule, write_drafts

IdentityFor = Callable[[UUID, str], dict[str, str]]
OutboxOf = Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]
BrandFor = Callable[[UUID], Awaitable[str]]

DECEMBER, JANUARY = "2026-12", "2027-01"
CAMPAIGNS = "/v1/planner/campaigns"
REVIEW = "/v1/planner/review"
COMMENT = "Too formal for us: mention the terrace heaters."


# ---- helpers ---------------------------------------------------------------------------
async def drafted_campaign(
    client: httpx.AsyncClient,
    db: Database,
    tenant_id: UUID,
    headers: dict[str, str],
    brand: str,
    name: str = "Winter menu",
) -> str:
    """A campaign with December and January laid out and every post a draft."""
    campaign_id = await new_campaign(client, headers, brand, name)
    for month in (DECEMBER, JANUARY):
        await schedule(client, headers, campaign_id, month)
    await write_drafts(db, tenant_id, campaign_id)
    assert {p.state for p in await posts_of(db, campaign_id)} == {"draft_ready"}
    return campaign_id


async def new_link(
    client: httpx.AsyncClient, headers: dict[str, str], campaign_id: str, **body: Any
) -> dict[str, Any]:
    url = f"{CAMPAIGNS}/{campaign_id}/review-links"
    response = await client.post(url, json=body, headers=headers)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def link_row(db: Database, link_id: str) -> ReviewLink:
    async with db.transaction() as session:
        return await session.get_one(ReviewLink, UUID(link_id))


async def history(
    client: httpx.AsyncClient, headers: dict[str, str], post_id: UUID
) -> list[tuple[str | None, str, str, str | None]]:
    response = await client.get(f"/v1/planner/posts/{post_id}/history", headers=headers)
    assert response.status_code == 200, response.text
    return [
        (item["from_state"], item["to_state"], item["actor"], item["note"])
        for item in response.json()["items"]
    ]


def subject_of(headers: dict[str, str]) -> str:
    claims = jwt.decode(headers[IDENTITY_HEADER], options={"verify_signature": False})
    return str(claims["sub"])


async def decide(
    client: httpx.AsyncClient, token: str, post_id: UUID, **body: Any
) -> httpx.Response:
    # No identity header: the link is the client's only credential.
    return await client.post(f"{REVIEW}/{token}/posts/{post_id}", json=body)


async def fingerprint(
    db: Database, tenant_id: UUID
) -> tuple[list[tuple[UUID, str, UUID | None]], int, list[tuple[UUID, datetime | None]]]:
    """Everything a refused request must leave as it was: posts, history, link answers."""
    async with db.transaction() as session:
        posts = await session.execute(
            select(col(Post.id), col(Post.state), col(Post.generation_request_id))
            .where(col(Post.tenant_id) == tenant_id)
            .order_by(col(Post.id))
        )
        moves = await session.scalar(
            select(func.count()).where(col(PostTransition.tenant_id) == tenant_id)
        )
        links = await session.execute(
            select(col(ReviewLink.id), col(ReviewLink.answered_at))
            .where(col(ReviewLink.tenant_id) == tenant_id)
            .order_by(col(ReviewLink.id))
        )
        return (
            [(post_id, state, request_id) for post_id, state, request_id in posts],
            moves or 0,
            [(link_id, answered_at) for link_id, answered_at in links],
        )


@pytest.fixture
def editor(tenant: UUID, identity_for: IdentityFor) -> dict[str, str]:
    return identity_for(tenant, "editor")


@pytest.fixture
async def campaign(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    brand: str,
) -> str:
    return await drafted_campaign(client, planner_db, tenant, editor, brand)


@pytest.fixture
async def link(client: httpx.AsyncClient, editor: dict[str, str], campaign: str) -> dict[str, Any]:
    """A December link of the campaign: December's drafts are in review."""
    return await new_link(client, editor, campaign, month=DECEMBER)


# ---- creating links --------------------------------------------------------------------
async def test_a_month_link_puts_that_months_drafts_in_review_and_no_others(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    answer = await new_link(client, editor, campaign, month=DECEMBER)

    december = await posts_of(planner_db, campaign, DECEMBER)
    january = await posts_of(planner_db, campaign, JANUARY)
    assert december
    assert january
    assert {p.state for p in december} == {"in_review"}
    assert {p.state for p in january} == {"draft_ready"}
    actor = f"user:{subject_of(editor)}"
    for post in december:
        *_, last = await history(client, editor, post.id)
        assert last[:3] == ("draft_ready", "in_review", actor)
    for post in january:
        *_, last = await history(client, editor, post.id)
        assert last[1] == "draft_ready"
    stored = await link_row(planner_db, answer["id"])
    assert (stored.month, stored.post_id, str(stored.campaign_id)) == (DECEMBER, None, campaign)


async def test_a_link_answer_has_a_url_ending_in_its_token_and_expires_in_72_hours(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    before = datetime.now(UTC)

    answer = await new_link(client, editor, campaign, month=DECEMBER)

    assert answer["token"]
    assert answer["url"].endswith(f"/v1/planner/review/{answer['token']}")
    assert answer["month"] == DECEMBER
    assert answer["post_id"] is None
    expires_at = datetime.fromisoformat(answer["expires_at"])
    assert before + timedelta(hours=72) <= expires_at <= datetime.now(UTC) + timedelta(hours=72)
    assert (await link_row(planner_db, answer["id"])).expires_at == expires_at


async def test_a_post_link_puts_only_that_post_in_review(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    first, *others = await posts_of(planner_db, campaign)

    answer = await new_link(client, editor, campaign, post_id=str(first.id))

    assert answer["post_id"] == str(first.id)
    assert answer["month"] is None
    states = {p.id: p.state for p in await posts_of(planner_db, campaign)}
    assert states.pop(first.id) == "in_review"
    assert others
    assert set(states.values()) == {"draft_ready"}


async def test_a_viewer_cannot_create_a_review_link(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    identity_for: IdentityFor,
    campaign: str,
) -> None:
    before = await fingerprint(planner_db, tenant)

    response = await client.post(
        f"{CAMPAIGNS}/{campaign}/review-links",
        json={"month": DECEMBER},
        headers=identity_for(tenant, "viewer"),
    )

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert await fingerprint(planner_db, tenant) == before
    assert before[2] == []


@pytest.mark.parametrize("scope", ["both", "neither"])
async def test_a_link_covers_exactly_one_of_a_post_and_a_month(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    campaign: str,
    scope: str,
) -> None:
    [first, *_] = await posts_of(planner_db, campaign)
    body = {"post_id": str(first.id), "month": DECEMBER} if scope == "both" else {}
    before = await fingerprint(planner_db, tenant)

    response = await client.post(f"{CAMPAIGNS}/{campaign}/review-links", json=body, headers=editor)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert await fingerprint(planner_db, tenant) == before


# ---- what the client sees --------------------------------------------------------------
async def test_the_client_sees_the_covered_posts_without_an_account(
    client: httpx.AsyncClient, planner_db: Database, campaign: str, link: dict[str, Any]
) -> None:
    response = await client.get(f"{REVIEW}/{link['token']}")  # no identity header

    assert response.status_code == 200, response.text
    view = response.json()
    assert view["campaign"] == "Winter menu"
    assert view["brand"].startswith("Brand ")
    december = await posts_of(planner_db, campaign, DECEMBER)
    assert [p["id"] for p in view["posts"]] == [str(p.id) for p in december]
    assert [p["text"] for p in view["posts"]] == [p.text for p in december]
    assert {p["state"] for p in view["posts"]} == {"in_review"}


async def test_the_client_view_shows_no_internal_fields(
    client: httpx.AsyncClient, planner_db: Database, campaign: str, link: dict[str, Any]
) -> None:
    # Internal fields that are set, so that leaking them would show.
    async with planner_db.transaction() as session:
        await session.execute(
            update(Post)
            .where(col(Post.campaign_id) == UUID(campaign))
            .values(generation_note="internal-note-xyz", last_error="internal-error-xyz")
        )

    response = await client.get(f"{REVIEW}/{link['token']}")

    assert response.status_code == 200, response.text
    posts = response.json()["posts"]
    assert posts
    for post in posts:
        assert set(post) == {
            "id",
            "channel",
            "scheduled_at",
            "state",
            "title",
            "text",
            "hashtags",
            "call_to_action",
            "image_prompt",
            "alt_text",
        }
    for secret in ("generation_job_id", "job-", "internal-note-xyz", "internal-error-xyz"):
        assert secret not in response.text


# ---- the client's decisions ------------------------------------------------------------
async def test_approving_makes_the_post_approved_by_the_client_and_answers_the_link(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    campaign: str,
    link: dict[str, Any],
) -> None:
    first, *others = await posts_of(planner_db, campaign, DECEMBER)

    response = await decide(client, link["token"], first.id, decision="approve")

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(first.id)
    assert response.json()["state"] == "approved"
    *_, last = await history(client, editor, first.id)
    assert last[:3] == ("in_review", "approved", f"client:{link['id']}")
    states = {p.id: p.state for p in await posts_of(planner_db, campaign, DECEMBER)}
    assert states.pop(first.id) == "approved"
    assert others
    assert set(states.values()) == {"in_review"}
    assert (await link_row(planner_db, link["id"])).answered_at is not None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"decision": "reject"}, id="no-comment"),
        pytest.param({"decision": "reject", "comment": None}, id="null-comment"),
        pytest.param({"decision": "reject", "comment": "   "}, id="blank-comment"),
    ],
)
async def test_a_rejection_without_a_comment_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    outbox_of: OutboxOf,
    campaign: str,
    link: dict[str, Any],
    body: dict[str, Any],
) -> None:
    [first, *_] = await posts_of(planner_db, campaign, DECEMBER)
    before, events = await fingerprint(planner_db, tenant), len(await outbox_of(tenant))

    response = await decide(client, link["token"], first.id, **body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert await fingerprint(planner_db, tenant) == before
    assert len(await outbox_of(tenant)) == events


async def test_a_rejection_sends_the_post_back_to_be_written_with_the_comment(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    campaign: str,
    link: dict[str, Any],
) -> None:
    [first, *_] = await posts_of(planner_db, campaign, DECEMBER)

    response = await decide(client, link["token"], first.id, decision="reject", comment=COMMENT)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "generating"
    [stored] = [p for p in await posts_of(planner_db, campaign) if p.id == first.id]
    assert stored.state == "generating"
    assert stored.generation_request_id is not None
    assert stored.generation_request_id != first.generation_request_id
    requests = [
        e.payload(PostGenerationRequested)
        for subject, e in await outbox_of(tenant)
        if subject == PostGenerationRequested.subject
    ]
    [request] = [r for r in requests if r.request_id == stored.generation_request_id]
    assert request.post_id == first.id
    assert request.note == COMMENT
    assert request.previous_text == first.text
    moves = await history(client, editor, first.id)
    assert [m[:2] for m in moves[-3:]] == [
        ("draft_ready", "in_review"),
        ("in_review", "rejected"),
        ("rejected", "generating"),
    ]
    assert moves[-2][2:] == (f"client:{link['id']}", COMMENT)
    assert (await link_row(planner_db, link["id"])).answered_at is not None


async def test_deciding_on_a_post_that_is_not_in_review_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    outbox_of: OutboxOf,
    campaign: str,
    link: dict[str, Any],
) -> None:
    [first, *_] = await posts_of(planner_db, campaign, DECEMBER)
    approved = await decide(client, link["token"], first.id, decision="approve")
    assert approved.status_code == 200, approved.text
    before, events = await fingerprint(planner_db, tenant), len(await outbox_of(tenant))

    response = await decide(client, link["token"], first.id, decision="reject", comment=COMMENT)

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "not_under_review"
    assert await fingerprint(planner_db, tenant) == before
    assert len(await outbox_of(tenant)) == events


@pytest.mark.parametrize("elsewhere", ["another-month", "another-campaign"])
async def test_deciding_on_a_post_the_link_does_not_cover_is_404_and_changes_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    brand: str,
    campaign: str,
    link: dict[str, Any],
    elsewhere: str,
) -> None:
    if elsewhere == "another-month":
        await new_link(client, editor, campaign, month=JANUARY)
        [target, *_] = await posts_of(planner_db, campaign, JANUARY)
    else:
        other = await drafted_campaign(client, planner_db, tenant, editor, brand, "Other")
        await new_link(client, editor, other, month=DECEMBER)
        [target, *_] = await posts_of(planner_db, other, DECEMBER)
    assert target.state == "in_review"  # a decision would apply, were it covered
    before = await fingerprint(planner_db, tenant)

    response = await decide(client, link["token"], target.id, decision="approve")

    assert response.status_code == 404, response.text
    assert await fingerprint(planner_db, tenant) == before


async def test_a_link_cannot_touch_another_tenants_post(
    client: httpx.AsyncClient,
    planner_db: Database,
    identity_for: IdentityFor,
    brand_for: BrandFor,
    link: dict[str, Any],
) -> None:
    stranger = uuid4()
    stranger_editor = identity_for(stranger, "editor")
    theirs = await drafted_campaign(
        client, planner_db, stranger, stranger_editor, await brand_for(stranger)
    )
    await new_link(client, stranger_editor, theirs, month=DECEMBER)
    [target, *_] = await posts_of(planner_db, theirs, DECEMBER)
    before = await fingerprint(planner_db, stranger)

    response = await decide(client, link["token"], target.id, decision="approve")

    assert response.status_code == 404, response.text
    assert await fingerprint(planner_db, stranger) == before
    [stored] = [p for p in await posts_of(planner_db, theirs) if p.id == target.id]
    assert stored.state == "in_review"


# ---- links that no longer work ---------------------------------------------------------
def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return ".".join((head, body, signature[:middle] + swapped + signature[middle + 1 :]))


def _signed_elsewhere(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, os.urandom(32), algorithm="HS256")


@pytest.mark.parametrize("kind", ["tampered", "other-secret", "revoked", "expired", "garbage"])
async def test_an_unusable_link_is_401_and_changes_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    campaign: str,
    link: dict[str, Any],
    kind: str,
) -> None:
    token = link["token"]
    if kind == "tampered":
        token = _tampered(token)
    elif kind == "other-secret":
        token = _signed_elsewhere(token)
    elif kind == "garbage":
        token = "not-a-token"
    elif kind == "revoked":
        revoked = await client.delete(f"/v1/planner/review-links/{link['id']}", headers=editor)
        assert revoked.status_code == 204, revoked.text
        assert (await link_row(planner_db, link["id"])).revoked_at is not None
    else:
        async with planner_db.transaction() as session:
            await session.execute(
                update(ReviewLink)
                .where(col(ReviewLink.id) == UUID(link["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
    assert token != link["token"] or kind in {"revoked", "expired"}
    [first, *_] = await posts_of(planner_db, campaign, DECEMBER)
    before, events = await fingerprint(planner_db, tenant), len(await outbox_of(tenant))

    viewed = await client.get(f"{REVIEW}/{token}")
    decided = await decide(client, token, first.id, decision="approve")

    for response in (viewed, decided):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_review_link"
        assert first.text is not None
        assert first.text not in response.text
    assert await fingerprint(planner_db, tenant) == before
    assert len(await outbox_of(tenant)) == events


async def test_the_untouched_link_still_works_where_its_variants_do_not(
    client: httpx.AsyncClient, link: dict[str, Any]
) -> None:
    # The control for the test above: the same link, unchanged, is accepted.
    response = await client.get(f"{REVIEW}/{link['token']}")

    assert response.status_code == 200, response.text


async def test_another_workspace_cannot_revoke_a_link(
    client: httpx.AsyncClient,
    planner_db: Database,
    identity_for: IdentityFor,
    link: dict[str, Any],
) -> None:
    response = await client.delete(
        f"/v1/planner/review-links/{link['id']}", headers=identity_for(uuid4(), "owner")
    )

    assert response.status_code == 404, response.text
    assert (await link_row(planner_db, link["id"])).revoked_at is None
    assert (await client.get(f"{REVIEW}/{link['token']}")).status_code == 200


# ---- reminders -------------------------------------------------------------------------
async def _set_expiry(db: Database, link_id: str, within: timedelta) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(ReviewLink)
            .where(col(ReviewLink.id) == UUID(link_id))
            .values(expires_at=datetime.now(UTC) + within)
        )


async def _remind(db: Database) -> None:
    async with db.transaction() as session:
        await remind_expiring(session, within=timedelta(hours=24))


async def test_an_unanswered_link_expiring_soon_is_reminded_once(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    campaign: str,
) -> None:
    soon = await new_link(client, editor, campaign, month=DECEMBER)
    later = await new_link(client, editor, campaign, month=JANUARY)
    await _set_expiry(planner_db, soon["id"], timedelta(hours=2))
    await _set_expiry(planner_db, later["id"], timedelta(hours=30))

    await _remind(planner_db)
    await _remind(planner_db)

    reminders = [
        e.payload(ReviewLinkExpiring)
        for subject, e in await outbox_of(tenant)
        if subject == ReviewLinkExpiring.subject
    ]
    assert [str(r.link_id) for r in reminders] == [soon["id"]]
    [reminder] = reminders
    assert str(reminder.campaign_id) == campaign
    assert reminder.month == DECEMBER
    assert reminder.created_by == subject_of(editor)
    assert (await link_row(planner_db, soon["id"])).reminded_at is not None
    assert (await link_row(planner_db, later["id"])).reminded_at is None


async def test_answered_and_revoked_links_get_no_reminder(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    outbox_of: OutboxOf,
    campaign: str,
) -> None:
    answered = await new_link(client, editor, campaign, month=DECEMBER)
    revoked = await new_link(client, editor, campaign, month=JANUARY)
    [first, *_] = await posts_of(planner_db, campaign, DECEMBER)
    decided = await decide(client, answered["token"], first.id, decision="approve")
    assert decided.status_code == 200, decided.text
    deleted = await client.delete(f"/v1/planner/review-links/{revoked['id']}", headers=editor)
    assert deleted.status_code == 204, deleted.text
    for link in (answered, revoked):
        await _set_expiry(planner_db, link["id"], timedelta(hours=2))

    await _remind(planner_db)

    subjects = [subject for subject, _ in await outbox_of(tenant)]
    assert ReviewLinkExpiring.subject not in subjects
    for link in (answered, revoked):
        assert (await link_row(planner_db, link["id"])).reminded_at is None


async def test_a_month_link_leaves_a_draft_without_text_out_of_review(
    client: httpx.AsyncClient, planner_db: Database, editor: dict[str, str], campaign: str
) -> None:
    # Nothing empty is reviewed: a client could neither approve it nor see what to judge.
    # The API refuses to empty a draft; a draft without text can still come from an
    # engine's empty answer, made here directly.
    first, *others = await posts_of(planner_db, campaign, DECEMBER)
    async with planner_db.transaction() as session:
        await session.execute(update(Post).where(col(Post.id) == first.id).values(text=None))

    await new_link(client, editor, campaign, month=DECEMBER)

    states = {p.id: p.state for p in await posts_of(planner_db, campaign, DECEMBER)}
    assert states.pop(first.id) == "draft_ready"
    assert others
    assert set(states.values()) == {"in_review"}
