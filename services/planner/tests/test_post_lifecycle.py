"""The post lifecycle through the API: allowed moves, refusals naming the allowed ones,
edits, rescheduling, regeneration and the history of who moved what."""

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from bai_contracts import PostGenerationRequested, PostStateChanged
from bai_platform.db import Database
from bai_platform.envelope import Envelope
from planner.models import Campaign, Post, PostTransition, PublishJob

IdentityFor = Callable[[UUID, str], dict[str, str]]
OutboxOf = Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]
STATES = [
    "planned",
    "generating",
    "draft_ready",
    "in_review",
    "approved",
    "scheduled",
    "published",
    "failed",
    "rejected",
]
# The moves people may make, written out as the product defines them.
ALLOWED = {
    ("draft_ready", "in_review"),
    ("draft_ready", "approved"),
    ("in_review", "approved"),
    ("in_review", "rejected"),
    ("in_review", "draft_ready"),
    ("approved", "scheduled"),
    ("approved", "in_review"),
    ("scheduled", "approved"),
    ("failed", "approved"),
    ("failed", "in_review"),
    ("rejected", "in_review"),
}


@pytest.fixture
async def campaign_id(planner_db: Database, tenant: UUID, brand: str) -> UUID:
    campaign = Campaign(
        tenant_id=tenant,
        brand_id=UUID(brand),
        name="Lifecycle",
        channels=["instagram", "linkedin"],
        cadence={},
        starts_on=date(2026, 1, 1),
        ends_on=date(2027, 12, 31),
        created_by="test",
    )
    async with planner_db.transaction() as session:
        session.add(campaign)
    return campaign.id


PostIn = Callable[..., Awaitable[UUID]]


@pytest.fixture
def post_in(planner_db: Database, tenant: UUID, campaign_id: UUID) -> PostIn:
    """A post of the campaign in ``state`` (with text unless told), stored directly."""
    counter = iter(range(1, 1000))

    async def make(state: str, *, text: str | None = "Winter blend is here") -> UUID:
        day = date(2027, 2, 1) + timedelta(days=next(counter))
        post = Post(
            tenant_id=tenant,
            campaign_id=campaign_id,
            channel="instagram",
            local_date=day,
            local_time=time(10),
            scheduled_at=datetime.combine(day, time(9), tzinfo=UTC),
            state=state,
            origin="test",
            text=text,
            hashtags=[],
            content_version=1 if text else 0,
        )
        async with planner_db.transaction() as session:
            session.add(post)
        return post.id

    return make


async def stored(planner_db: Database, post_id: UUID) -> Post:
    async with planner_db.transaction() as session:
        return await session.get_one(Post, post_id)


async def history(planner_db: Database, post_id: UUID) -> list[PostTransition]:
    async with planner_db.transaction() as session:
        query = select(PostTransition).where(col(PostTransition.post_id) == post_id)
        return list((await session.scalars(query.order_by(col(PostTransition.id)))).all())


def transition(post_id: UUID) -> str:
    return f"/v1/planner/posts/{post_id}/transitions"


@pytest.mark.parametrize(("current", "target"), [(a, b) for a in STATES for b in STATES])
async def test_only_the_moves_of_the_table_are_allowed(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
    current: str,
    target: str,
) -> None:
    post_id = await post_in(current)

    response = await client.post(
        transition(post_id), json={"to": target}, headers=identity_for(tenant, "editor")
    )

    if (current, target) in ALLOWED:
        assert response.status_code == 200, response.text
        assert response.json()["state"] == target
        assert (await stored(planner_db, post_id)).state == target
    else:
        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "invalid_transition"
        assert problem["allowed"] == sorted(b for a, b in ALLOWED if a == current)
        assert (await stored(planner_db, post_id)).state == current


async def test_a_move_is_kept_in_the_history_and_announced(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
    outbox_of: OutboxOf,
) -> None:
    post_id = await post_in("draft_ready")
    headers = identity_for(tenant, "editor")

    await client.post(transition(post_id), json={"to": "in_review", "note": "ok?"}, headers=headers)
    response = await client.get(f"/v1/planner/posts/{post_id}/history", headers=headers)

    [entry] = response.json()["items"]
    assert (entry["from_state"], entry["to_state"], entry["note"]) == (
        "draft_ready",
        "in_review",
        "ok?",
    )
    assert entry["actor"].startswith("user:")
    changes = [
        e.payload(PostStateChanged)
        for s, e in await outbox_of(tenant)
        if s == PostStateChanged.subject
    ]
    assert [(c.post_id, c.from_state, c.to_state) for c in changes] == [
        (post_id, "draft_ready", "in_review")
    ]


async def test_a_post_without_text_cannot_be_approved(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, post_in: PostIn
) -> None:
    post_id = await post_in("draft_ready", text=None)

    response = await client.post(
        transition(post_id), json={"to": "approved"}, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 409


async def test_a_viewer_cannot_move_a_post(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
) -> None:
    post_id = await post_in("draft_ready")

    response = await client.post(
        transition(post_id), json={"to": "in_review"}, headers=identity_for(tenant, "viewer")
    )

    assert response.status_code == 403
    assert (await stored(planner_db, post_id)).state == "draft_ready"


async def test_another_tenants_post_is_404_for_every_verb(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
) -> None:
    post_id = await post_in("draft_ready")
    intruder = identity_for(UUID(int=tenant.int ^ 1), "owner")

    answers = [
        await client.get(f"/v1/planner/posts/{post_id}", headers=intruder),
        await client.patch(f"/v1/planner/posts/{post_id}", json={"text": "x"}, headers=intruder),
        await client.post(transition(post_id), json={"to": "in_review"}, headers=intruder),
        await client.post(f"/v1/planner/posts/{post_id}/regenerate", json={}, headers=intruder),
        await client.get(f"/v1/planner/posts/{post_id}/history", headers=intruder),
    ]

    assert [a.status_code for a in answers] == [404] * 5
    post = await stored(planner_db, post_id)
    assert (post.state, post.text) == ("draft_ready", "Winter blend is here")


async def test_editing_a_planned_post_makes_it_a_draft_with_a_new_version(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
) -> None:
    post_id = await post_in("planned", text=None)

    response = await client.patch(
        f"/v1/planner/posts/{post_id}",
        json={"text": "Hand written", "hashtags": ["#coffee", "winter", "coffee"]},
        headers=identity_for(tenant, "editor"),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["text"], body["content_version"]) == (
        "draft_ready",
        "Hand written",
        1,
    )
    assert body["hashtags"] == ["coffee", "winter"]
    [entry] = await history(planner_db, post_id)
    assert (entry.from_state, entry.to_state, entry.note) == ("planned", "draft_ready", "edited")


@pytest.mark.parametrize("state", ["generating", "in_review", "approved", "scheduled", "published"])
async def test_content_cannot_be_edited_outside_drafting(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
    state: str,
) -> None:
    post_id = await post_in(state)

    response = await client.patch(
        f"/v1/planner/posts/{post_id}",
        json={"text": "Sneaky"},
        headers=identity_for(tenant, "editor"),
    )

    assert response.status_code == 409
    assert response.json()["code"] == "post_not_editable"
    assert (await stored(planner_db, post_id)).text == "Winter blend is here"


async def test_rescheduling_keeps_the_brands_wall_time(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
) -> None:
    post_id = await post_in("approved")

    response = await client.patch(
        f"/v1/planner/posts/{post_id}",
        json={"scheduled_at": "2027-07-01T18:30:00+00:00"},
        headers=identity_for(tenant, "editor"),
    )

    assert response.status_code == 200, response.text
    post = await stored(planner_db, post_id)
    assert post.scheduled_at == datetime(2027, 7, 1, 18, 30, tzinfo=UTC)
    # Madrid is UTC+2 in July.
    assert (post.local_date, post.local_time) == (date(2027, 7, 1), time(20, 30))


@pytest.mark.parametrize(
    "when",
    [
        "2020-01-01T10:00:00+00:00",  # the past
        "2030-01-01T10:00:00+00:00",  # after the campaign
        "2027-07-01T18:30:00",  # no offset
    ],
)
async def test_a_bad_new_time_is_422_and_moves_nothing(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
    when: str,
) -> None:
    post_id = await post_in("approved")
    before = (await stored(planner_db, post_id)).scheduled_at

    response = await client.patch(
        f"/v1/planner/posts/{post_id}",
        json={"scheduled_at": when},
        headers=identity_for(tenant, "editor"),
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == "scheduled_at"
    assert (await stored(planner_db, post_id)).scheduled_at == before


async def test_moving_a_post_onto_another_posts_slot_is_409(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
) -> None:
    first, second = await post_in("approved"), await post_in("approved")
    taken = (await stored(planner_db, first)).scheduled_at

    response = await client.patch(
        f"/v1/planner/posts/{second}",
        json={"scheduled_at": taken.isoformat()},
        headers=identity_for(tenant, "editor"),
    )

    assert response.status_code == 409
    assert response.json()["code"] == "slot_taken"


async def test_regenerating_asks_again_with_the_note_and_a_new_request_id(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
    outbox_of: OutboxOf,
) -> None:
    post_id = await post_in("draft_ready")

    response = await client.post(
        f"/v1/planner/posts/{post_id}/regenerate",
        json={"note": "Shorter, mention the terrace"},
        headers=identity_for(tenant, "editor"),
    )

    assert response.status_code == 202, response.text
    post = await stored(planner_db, post_id)
    assert (post.state, post.generation_note) == ("generating", "Shorter, mention the terrace")
    [request] = [
        e.payload(PostGenerationRequested)
        for s, e in await outbox_of(tenant)
        if s == PostGenerationRequested.subject
    ]
    assert request.request_id == post.generation_request_id
    assert request.note == "Shorter, mention the terrace"
    assert request.previous_text == "Winter blend is here"


@pytest.mark.parametrize("state", ["generating", "approved", "scheduled", "published"])
async def test_regenerating_is_refused_where_it_would_lose_work_in_flight(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, post_in: PostIn, state: str
) -> None:
    post_id = await post_in(state)

    response = await client.post(
        f"/v1/planner/posts/{post_id}/regenerate", json={}, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 409


async def test_the_calendar_across_campaigns_filters_by_time_range_channel_and_state(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, post_in: PostIn
) -> None:
    ids = [await post_in(s) for s in ("draft_ready", "approved", "draft_ready")]
    headers = identity_for(tenant, "viewer")
    window = {"from": "2027-02-02T00:00:00Z", "to": "2027-02-04T00:00:00Z"}

    in_window = await client.get("/v1/planner/posts", params=window, headers=headers)
    drafts = await client.get("/v1/planner/posts", params={"state": "draft_ready"}, headers=headers)
    linkedin = await client.get(
        "/v1/planner/posts", params={"channel": "linkedin"}, headers=headers
    )

    assert [i["id"] for i in in_window.json()["items"]] == [str(ids[0]), str(ids[1])]
    assert {i["id"] for i in drafts.json()["items"]} == {str(ids[0]), str(ids[2])}
    assert linkedin.json()["items"] == []


async def test_taking_a_scheduled_post_back_or_moving_it_stands_its_publish_job_down(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
) -> None:
    moved_back, moved_later = await post_in("scheduled"), await post_in("scheduled")
    async with planner_db.transaction() as session:
        for post_id in (moved_back, moved_later):
            session.add(
                PublishJob(
                    id=f"pub_{uuid4().hex}", tenant_id=tenant, post_id=post_id, state="dispatched"
                )
            )
    headers = identity_for(tenant, "editor")

    back = await client.post(transition(moved_back), json={"to": "approved"}, headers=headers)
    later = await client.patch(
        f"/v1/planner/posts/{moved_later}",
        json={"scheduled_at": "2027-06-01T10:00:00Z"},
        headers=headers,
    )

    assert (back.status_code, later.status_code) == (200, 200)
    async with planner_db.transaction() as session:
        query = select(col(PublishJob.state)).where(
            col(PublishJob.post_id).in_([moved_back, moved_later])
        )
        assert set((await session.scalars(query)).all()) == {"cancelled"}


@pytest.mark.parametrize("text", [None, "", "   "])
async def test_a_drafts_text_cannot_be_emptied(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    post_in: PostIn,
    planner_db: Database,
    text: str | None,
) -> None:
    post_id = await post_in("draft_ready")

    response = await client.patch(
        f"/v1/planner/posts/{post_id}", json={"text": text}, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 422
    assert (await stored(planner_db, post_id)).text == "Winter blend is here"
