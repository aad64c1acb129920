"""Planner test fixtures: the app on the session's real database, trusted identities, reads.

The app trusts one test signing key (as it would trust the gateway's JWKS); tests mint
``X-BAI-Identity`` tokens with it. Every test works in fresh tenants: the database is
shared by the whole session.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlmodel import col

from bai_contracts import ContentGenerated, EventContract, GeneratedContent
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_testing.plugin import settings_for, trusting_client
from planner.app import create_app
from planner.models import Brand, Campaign, Post, outbox
from planner.service.generation import apply_generated
from planner.settings import PlannerSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]
OutboxOf = Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]
EventT = TypeVar("EventT", bound=EventContract)


@pytest.fixture(scope="session")
def planner_settings(migrated: Stack) -> PlannerSettings:
    settings = settings_for(PlannerSettings, migrated, "planner")
    # Stand-in workflows listen on 127.0.0.1; the refusal itself has its own test.
    return settings.model_copy(update={"allow_private_destinations": True})


@pytest.fixture(scope="session")
def identity_audience(planner_settings: PlannerSettings) -> str:
    """The audience ``identity_for`` mints for: the one this service accepts."""
    return planner_settings.identity_audience


@pytest.fixture
async def client(
    planner_settings: PlannerSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(planner_settings), signing_key) as http:
        yield http


@pytest.fixture(scope="session")
async def planner_db(planner_settings: PlannerSettings) -> AsyncIterator[Database]:
    """Direct access as the planner's own role, to check what a request stored."""
    database = Database(planner_settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def campaigns_of(planner_db: Database) -> Callable[[UUID], Awaitable[list[Campaign]]]:
    """The tenant's stored campaigns."""

    async def read(tenant_id: UUID) -> list[Campaign]:
        async with planner_db.transaction() as session:
            query = select(Campaign).where(col(Campaign.tenant_id) == tenant_id)
            return list((await session.scalars(query)).all())

    return read


@pytest.fixture
def editor(tenant: UUID, identity_for: IdentityFor) -> dict[str, str]:
    """Headers of an editor of the test's tenant."""
    return identity_for(tenant, "editor")


@pytest.fixture
def outbox_of(planner_db: Database) -> OutboxOf:
    """Every outbox row whose envelope names the tenant, as (row subject, envelope)."""

    async def read(tenant_id: UUID) -> list[tuple[str, Envelope]]:
        async with planner_db.transaction() as session:
            rows = (await session.execute(select(outbox.c.subject, outbox.c.payload))).all()
        pairs = [(row.subject, Envelope.model_validate_json(row.payload)) for row in rows]
        return [(subject, e) for subject, e in pairs if e.tenantid == str(tenant_id)]

    return read


class Announced(Protocol):
    async def __call__(self, contract: type[EventT]) -> list[EventT]: ...


@pytest.fixture
def announced(tenant: UUID, outbox_of: OutboxOf) -> Announced:
    """The test tenant's outbox events on ``contract``'s subject, read as ``contract``."""

    async def read(contract: type[EventT]) -> list[EventT]:
        return [e.payload(contract) for s, e in await outbox_of(tenant) if s == contract.subject]

    return read


BrandFor = Callable[[UUID], Awaitable[str]]


@pytest.fixture
def brand_for(planner_db: Database) -> BrandFor:
    """A brand of the tenant (Europe/Madrid, a plain voice), stored directly; its id."""

    async def make(tenant_id: UUID) -> str:
        brand = Brand(
            tenant_id=tenant_id,
            name=f"Brand {uuid4().hex[:8]}",
            timezone="Europe/Madrid",
            default_channels=["instagram"],
            voice={"tone": "warm", "keywords": ["coffee"], "avoid": ["cheap"]},
            created_by="test",
        )
        async with planner_db.transaction() as session:
            session.add(brand)
        return str(brand.id)

    return make


@pytest.fixture
async def brand(brand_for: BrandFor, tenant: UUID) -> str:
    """A brand of the test's tenant."""
    return await brand_for(tenant)


# ---- a campaign laid out and drafted through the API (exchange and review-link tests) --
CAMPAIGNS = "/v1/planner/campaigns"
# Every Monday at 10:00 unless a test asks for more.
WEEKLY_INSTAGRAM = {"instagram": {"per_week": 1}}


async def new_campaign(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    brand: str,
    name: str = "Winter menu",
    cadence: dict[str, dict[str, int]] | None = None,
) -> str:
    cadence = cadence or WEEKLY_INSTAGRAM
    body = {"brand_id": brand, "name": name, "channels": list(cadence), "cadence": cadence}
    response = await client.post(CAMPAIGNS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def schedule(
    client: httpx.AsyncClient, headers: dict[str, str], campaign_id: str, month: str
) -> None:
    url = f"{CAMPAIGNS}/{campaign_id}/schedule"
    response = await client.post(url, json={"month": month}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["created"] > 0


async def posts_of(db: Database, campaign_id: str, month: str | None = None) -> list[Post]:
    """The campaign's stored posts (of one local month), in calendar order."""
    async with db.transaction() as session:
        query = select(Post).where(col(Post.campaign_id) == UUID(campaign_id))
        order = (col(Post.scheduled_at), col(Post.channel), col(Post.id))
        rows = (await session.scalars(query.order_by(*order))).all()
    return [p for p in rows if month is None or p.local_date.strftime("%Y-%m") == month]


async def write_drafts(db: Database, tenant_id: UUID, campaign_id: str) -> None:
    """Answer every generating post of the campaign as creator does: they become drafts."""
    async with db.transaction() as session:
        query = select(Post).where(
            col(Post.campaign_id) == UUID(campaign_id), col(Post.state) == "generating"
        )
        for post in (await session.scalars(query)).all():
            assert post.generation_request_id is not None
            event = ContentGenerated(
                request_id=post.generation_request_id,
                post_id=post.id,
                job_id=f"job-{post.id.hex[:8]}",
                version=1,
                content=GeneratedContent(
                    title=f"{post.channel} {post.local_date:%d %b}",
                    text=f"Hot chocolate on the terrace, {post.local_date:%d %B}.",
                    hashtags=["winter", "cocoa"],
                    call_to_action="Book a table",
                ),
            )
            await apply_generated(session, tenant_id=tenant_id, event=event)
