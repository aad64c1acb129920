"""Client review links: what a link puts in review, what the client sees and decides, refusals."""

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy import func, select, text, update
from sqlmodel import col

from bai_contracts import (
    PostGenerationRequested,
    ReviewLinkExpiring,
)
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.identity import IDENTITY_HEADER
from planner.models import Post, PostTransition, ReviewLink
from planner.service.reviews import remind_expiring

from .conftest import (
    Announced,
    BrandFor,
    IdentityFor,
    OutboxOf,
    new_campaign,
    posts_of,
    schedule,
    write_drafts,
)

DECEMBER, JANUARY = "2026-12", "2027-01"
CAMPAIGNS = "/v1/planner/campaigns"
REVIEW = "/v1/planner/review"
COMMENT = "Too formal for us: mention the terrace heaters."


# ---- helpers ---------------------------------------------------------------------------
async def post_link(
    client: httpx.AsyncClient, headers: dict[str, str], campaign_id: str, **body: Any
) -> httpx.Response:
    """Ask for a review link of the campaign with ``body``: the answer, as it comes."""
    url = f"{CAMPAIGNS}/{campaign_id}/review-links"
    return await client.post(url, json=body, headers=headers)


async def new_link(
    client: httpx.AsyncClient, headers: dict[str, str], campaign_id: str, **body: Any
) -> dict[str, Any]:
    response = await post_link(client, headers, campaign_id, **body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def revoke(
    client: httpx.AsyncClient, headers: dict[str, str], link_id: str
) -> httpx.Response:
    return await client.delete(f"/v1/planner/review-links/{link_id}", headers=headers)


async def link_row(db: Database, link_id: str) -> ReviewLink:
    async with db.transaction() as session:
        return await session.get_one(ReviewLink, UUID(link_id))


async def stored_post(db: Database, campaign_id: str, post_id: UUID) -> Post:
    """The one stored post of the campaign with ``post_id``."""
    [stored] = [p for p in await posts_of(db, campaign_id) if p.id == post_id]
    return stored


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


# No identity header in what the client does: the link is the client's only credential.
async def view(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{REVIEW}/{token}")


async def decide(
    client: httpx.AsyncClient, token: str, post_id: UUID, **body: Any
) -> httpx.Response:
    return await client.post(f"{REVIEW}/{token}/posts/{post_id}", json=body)


Fingerprint = tuple[list[tuple[UUID, str, UUID | None]], int, list[tuple[UUID, datetime | None]]]


async def fingerprint(db: Database, tenant_id: UUID) -> Fingerprint:
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


class Drafted(Protocol):
    async def __call__(
        self, tenant_id: UUID, headers: dict[str, str], brand: str, name: str = "Winter menu"
    ) -> str: ...


@pytest.fixture
def drafted(client: httpx.AsyncClient, planner_db: Database) -> Drafted:
    """A new campaign with December and January laid out and every post a draft: its id."""

    async def make(
        tenant_id: UUID, headers: dict[str, str], brand: str, name: str = "Winter menu"
    ) -> str:
        campaign_id = await new_campaign(client, headers, brand, name)
        for month in (DECEMBER, JANUARY):
            await schedule(client, headers, campaign_id, month)
        await write_drafts(planner_db, tenant_id, campaign_id)
        assert {p.state for p in await posts_of(planner_db, campaign_id)} == {"draft_ready"}
        return campaign_id

    return make


@pytest.fixture
async def campaign(drafted: Drafted, tenant: UUID, editor: dict[str, str], brand: str) -> str:
    return await drafted(tenant, editor, brand)


class PostsIn(Protocol):
    async def __call__(self, month: str | None = None) -> list[Post]: ...


@pytest.fixture
def posts_in(planner_db: Database, campaign: str) -> PostsIn:
    """The campaign's stored posts (of one month), in calendar order."""

    async def read(month: str | None = None) -> list[Post]:
        return await posts_of(planner_db, campaign, month)

    return read


LinkTo = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def link_to(client: httpx.AsyncClient, editor: dict[str, str], campaign: str) -> LinkTo:
    """An editor's new review link of the campaign, for the ``post_id`` or ``month`` given."""

    async def make(**body: Any) -> dict[str, Any]:
        return await new_link(client, editor, campaign, **body)

    return make


@pytest.fixture
async def link(link_to: LinkTo) -> dict[str, Any]:
    """A December link of the campaign: December's drafts are in review."""
    return await link_to(month=DECEMBER)


@pytest.fixture
async def month_links(link_to: LinkTo) -> tuple[dict[str, Any], dict[str, Any]]:
    """A December link of the campaign, then a January one."""
    return await link_to(month=DECEMBER), await link_to(month=JANUARY)


FingerprintNow = Callable[[], Awaitable[Fingerprint]]
OutboxSize = Callable[[], Awaitable[int]]


@pytest.fixture
def fingerprint_now(planner_db: Database, tenant: UUID) -> FingerprintNow:
    """The test tenant's fingerprint, read when called."""

    async def read() -> Fingerprint:
        return await fingerprint(planner_db, tenant)

    return read


@pytest.fixture
def outbox_size(outbox_of: OutboxOf, tenant: UUID) -> OutboxSize:
    """How many outbox events name the test tenant, counted when called."""

    async def count() -> int:
        return len(await outbox_of(tenant))

    return count


# ---- creating links --------------------------------------------------------------------
async def test_a_month_link_puts_that_months_drafts_in_review_and_no_others(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    campaign: str,
    posts_in: PostsIn,
    link_to: LinkTo,
) -> None:
    answer = await link_to(month=DECEMBER)

    december = await posts_in(DECEMBER)
    january = await posts_in(JANUARY)
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


async def test_a_month_link_waits_out_a_deadlock_with_a_worker_instead_of_failing(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    campaign: str,
    posts_in: PostsIn,
    migrated: Stack,
) -> None:
    """The worker's batch of creator's answers locks posts in the order the drafts came; a
    link locks the month's posts in calendar order. Here the worker holds the month's last
    post, the link waits for it, and the worker then wants the first: PostgreSQL ends the
    link's transaction for the deadlock (its deadlock_timeout fires first). The request
    tries again once the worker is through, and the month is in review."""
    first, *_, last = await posts_in(DECEMBER)
    worker = await asyncpg.connect(migrated.admin_dsn())  # a superuser: deadlock_timeout
    try:
        async with worker.transaction():
            await worker.execute("SET LOCAL deadlock_timeout = '30s'")
            await worker.execute(LOCK_POST, last.id)
            request = asyncio.create_task(post_link(client, editor, campaign, month=DECEMBER))
            async with asyncio.timeout(10):
                while not await _waiting_for_a_lock(planner_db):
                    assert not request.done(), request.result().text
                    await asyncio.sleep(0.05)
            # Granted once the link's first attempt has been rolled back.
            await worker.execute(LOCK_POST, first.id)
    finally:
        await worker.close()
    async with asyncio.timeout(10):
        response = await request
    assert response.status_code == 201, response.text
    assert {p.state for p in await posts_in(DECEMBER)} == {"in_review"}
    assert {p.state for p in await posts_in(JANUARY)} == {"draft_ready"}


LOCK_POST = "SELECT id FROM planner.posts WHERE id = $1 FOR UPDATE"


async def _waiting_for_a_lock(db: Database) -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND query ILIKE '%FOR UPDATE%'"
    )
    async with db.transaction() as session:
        return bool(await session.scalar(query))


async def test_a_link_answer_has_a_url_ending_in_its_token_and_expires_in_72_hours(
    planner_db: Database, link_to: LinkTo
) -> None:
    before = datetime.now(UTC)

    answer = await link_to(month=DECEMBER)

    assert answer["token"]
    assert answer["url"].endswith(f"/v1/planner/review/{answer['token']}")
    assert answer["month"] == DECEMBER
    assert answer["post_id"] is None
    expires_at = datetime.fromisoformat(answer["expires_at"])
    assert before + timedelta(hours=72) <= expires_at <= datetime.now(UTC) + timedelta(hours=72)
    assert (await link_row(planner_db, answer["id"])).expires_at == expires_at


async def test_a_post_link_puts_only_that_post_in_review(
    posts_in: PostsIn, link_to: LinkTo
) -> None:
    first, *others = await posts_in()

    answer = await link_to(post_id=str(first.id))

    assert answer["post_id"] == str(first.id)
    assert answer["month"] is None
    states = {p.id: p.state for p in await posts_in()}
    assert states.pop(first.id) == "in_review"
    assert others
    assert set(states.values()) == {"draft_ready"}


async def test_a_viewer_cannot_create_a_review_link(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    campaign: str,
    fingerprint_now: FingerprintNow,
) -> None:
    before = await fingerprint_now()

    response = await post_link(client, identity_for(tenant, "viewer"), campaign, month=DECEMBER)

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert await fingerprint_now() == before
    assert before[2] == []


@pytest.mark.parametrize("scope", ["both", "neither"])
async def test_a_link_covers_exactly_one_of_a_post_and_a_month(
    client: httpx.AsyncClient,
    editor: dict[str, str],
    campaign: str,
    posts_in: PostsIn,
    fingerprint_now: FingerprintNow,
    scope: str,
) -> None:
    [first, *_] = await posts_in()
    body = {"post_id": str(first.id), "month": DECEMBER} if scope == "both" else {}
    before = await fingerprint_now()

    response = await post_link(client, editor, campaign, **body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert await fingerprint_now() == before


# ---- what the client sees --------------------------------------------------------------
async def test_the_client_sees_the_covered_posts_without_an_account(
    client: httpx.AsyncClient, posts_in: PostsIn, link: dict[str, Any]
) -> None:
    response = await view(client, link["token"])  # no identity header

    assert response.status_code == 200, response.text
    page = response.json()
    assert page["campaign"] == "Winter menu"
    assert page["brand"].startswith("Brand ")
    december = await posts_in(DECEMBER)
    assert [p["id"] for p in page["posts"]] == [str(p.id) for p in december]
    assert [p["text"] for p in page["posts"]] == [p.text for p in december]
    assert {p["state"] for p in page["posts"]} == {"in_review"}


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

    response = await view(client, link["token"])

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
    posts_in: PostsIn,
    link: dict[str, Any],
) -> None:
    first, *others = await posts_in(DECEMBER)

    response = await decide(client, link["token"], first.id, decision="approve")

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(first.id)
    assert response.json()["state"] == "approved"
    *_, last = await history(client, editor, first.id)
    assert last[:3] == ("in_review", "approved", f"client:{link['id']}")
    states = {p.id: p.state for p in await posts_in(DECEMBER)}
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
    posts_in: PostsIn,
    fingerprint_now: FingerprintNow,
    outbox_size: OutboxSize,
    link: dict[str, Any],
    body: dict[str, Any],
) -> None:
    [first, *_] = await posts_in(DECEMBER)
    before, events = await fingerprint_now(), await outbox_size()

    response = await decide(client, link["token"], first.id, **body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert await fingerprint_now() == before
    assert await outbox_size() == events


async def test_a_rejection_sends_the_post_back_to_be_written_with_the_comment(
    client: httpx.AsyncClient,
    planner_db: Database,
    editor: dict[str, str],
    announced: Announced,
    campaign: str,
    posts_in: PostsIn,
    link: dict[str, Any],
) -> None:
    [first, *_] = await posts_in(DECEMBER)

    response = await decide(client, link["token"], first.id, decision="reject", comment=COMMENT)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "generating"
    stored = await stored_post(planner_db, campaign, first.id)
    assert stored.state == "generating"
    assert stored.generation_request_id is not None
    assert stored.generation_request_id != first.generation_request_id
    requests = await announced(PostGenerationRequested)
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
    posts_in: PostsIn,
    fingerprint_now: FingerprintNow,
    outbox_size: OutboxSize,
    link: dict[str, Any],
) -> None:
    [first, *_] = await posts_in(DECEMBER)
    approved = await decide(client, link["token"], first.id, decision="approve")
    assert approved.status_code == 200, approved.text
    before, events = await fingerprint_now(), await outbox_size()

    response = await decide(client, link["token"], first.id, decision="reject", comment=COMMENT)

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "not_under_review"
    assert await fingerprint_now() == before
    assert await outbox_size() == events


@pytest.mark.parametrize("elsewhere", ["another-month", "another-campaign"])
async def test_deciding_on_a_post_the_link_does_not_cover_is_404_and_changes_nothing(
    client: httpx.AsyncClient,
    planner_db: Database,
    tenant: UUID,
    editor: dict[str, str],
    brand: str,
    drafted: Drafted,
    posts_in: PostsIn,
    link_to: LinkTo,
    fingerprint_now: FingerprintNow,
    link: dict[str, Any],
    elsewhere: str,
) -> None:
    if elsewhere == "another-month":
        await link_to(month=JANUARY)
        [target, *_] = await posts_in(JANUARY)
    else:
        other = await drafted(tenant, editor, brand, "Other")
        await new_link(client, editor, other, month=DECEMBER)
        [target, *_] = await posts_of(planner_db, other, DECEMBER)
    assert target.state == "in_review"  # a decision would apply, were it covered
    before = await fingerprint_now()

    response = await decide(client, link["token"], target.id, decision="approve")

    assert response.status_code == 404, response.text
    assert await fingerprint_now() == before


async def test_a_link_cannot_touch_another_tenants_post(
    client: httpx.AsyncClient,
    planner_db: Database,
    identity_for: IdentityFor,
    brand_for: BrandFor,
    drafted: Drafted,
    link: dict[str, Any],
) -> None:
    stranger = uuid4()
    stranger_editor = identity_for(stranger, "editor")
    theirs = await drafted(stranger, stranger_editor, await brand_for(stranger))
    await new_link(client, stranger_editor, theirs, month=DECEMBER)
    [target, *_] = await posts_of(planner_db, theirs, DECEMBER)
    before = await fingerprint(planner_db, stranger)

    response = await decide(client, link["token"], target.id, decision="approve")

    assert response.status_code == 404, response.text
    assert await fingerprint(planner_db, stranger) == before
    assert (await stored_post(planner_db, theirs, target.id)).state == "in_review"


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
    editor: dict[str, str],
    posts_in: PostsIn,
    fingerprint_now: FingerprintNow,
    outbox_size: OutboxSize,
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
        revoked = await revoke(client, editor, link["id"])
        assert revoked.status_code == 204, revoked.text
        assert (await link_row(planner_db, link["id"])).revoked_at is not None
    else:
        await _set_expiry(planner_db, link["id"], -timedelta(minutes=1))
    assert token != link["token"] or kind in {"revoked", "expired"}
    [first, *_] = await posts_in(DECEMBER)
    before, events = await fingerprint_now(), await outbox_size()

    viewed = await view(client, token)
    decided = await decide(client, token, first.id, decision="approve")

    for response in (viewed, decided):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_review_link"
        assert first.text is not None
        assert first.text not in response.text
    assert await fingerprint_now() == before
    assert await outbox_size() == events


async def test_the_untouched_link_still_works_where_its_variants_do_not(
    client: httpx.AsyncClient, link: dict[str, Any]
) -> None:
    # The control for the test above: the same link, unchanged, is accepted.
    response = await view(client, link["token"])

    assert response.status_code == 200, response.text


async def test_another_workspace_cannot_revoke_a_link(
    client: httpx.AsyncClient,
    planner_db: Database,
    identity_for: IdentityFor,
    link: dict[str, Any],
) -> None:
    response = await revoke(client, identity_for(uuid4(), "owner"), link["id"])

    assert response.status_code == 404, response.text
    assert (await link_row(planner_db, link["id"])).revoked_at is None
    assert (await view(client, link["token"])).status_code == 200


# ---- reminders -------------------------------------------------------------------------
async def test_an_unanswered_link_expiring_soon_is_reminded_once(
    planner_db: Database,
    editor: dict[str, str],
    announced: Announced,
    campaign: str,
    month_links: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    soon, later = month_links
    await _set_expiry(planner_db, soon["id"], timedelta(hours=2))
    await _set_expiry(planner_db, later["id"], timedelta(hours=30))

    await _remind(planner_db)
    await _remind(planner_db)

    reminders = await announced(ReviewLinkExpiring)
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
    posts_in: PostsIn,
    month_links: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    answered, revoked = month_links
    [first, *_] = await posts_in(DECEMBER)
    decided = await decide(client, answered["token"], first.id, decision="approve")
    assert decided.status_code == 200, decided.text
    deleted = await revoke(client, editor, revoked["id"])
    assert deleted.status_code == 204, deleted.text
    for link in (answered, revoked):
        await _set_expiry(planner_db, link["id"], timedelta(hours=2))

    await _remind(planner_db)

    subjects = [subject for subject, _ in await outbox_of(tenant)]
    assert ReviewLinkExpiring.subject not in subjects
    for link in (answered, revoked):
        assert (await link_row(planner_db, link["id"])).reminded_at is None


async def test_a_month_link_leaves_a_draft_without_text_out_of_review(
    planner_db: Database, posts_in: PostsIn, link_to: LinkTo
) -> None:
    # Nothing empty is reviewed: a client could neither approve it nor see what to judge.
    # The API refuses to empty a draft; a draft without text can still come from an
    # engine's empty answer, made here directly.
    first, *others = await posts_in(DECEMBER)
    async with planner_db.transaction() as session:
        await session.execute(update(Post).where(col(Post.id) == first.id).values(text=None))

    await link_to(month=DECEMBER)

    states = {p.id: p.state for p in await posts_in(DECEMBER)}
    assert states.pop(first.id) == "draft_ready"
    assert others
    assert set(states.values()) == {"in_review"}
