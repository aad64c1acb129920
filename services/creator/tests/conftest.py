"""Creator test fixtures: the app on the session's real database, trusted identities, reads.

The app trusts one test signing key (as it would trust the gateway's JWKS); tests mint
``X-BAI-Identity`` tokens with it. Every test works in fresh tenants and campaigns: the
database is shared by the whole session.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlmodel import col

from bai_contracts import CampaignCreated
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope, new_event
from bai_platform.secrets import fernet_for
from bai_testing.plugin import settings_for, trusting_client
from creator.app import create_app
from creator.events import on_campaign_created
from creator.models import CampaignBrief, EngineSettings
from creator.service.engines.config import ENGINE_SECRETS
from creator.settings import CreatorSettings


@pytest.fixture(scope="session")
def creator_settings(migrated: Stack) -> CreatorSettings:
    return settings_for(CreatorSettings, migrated, "creator")


@pytest.fixture(scope="session")
def identity_audience(creator_settings: CreatorSettings) -> str:
    """The audience ``identity_for`` mints for: the one this service accepts."""
    return creator_settings.identity_audience


@pytest.fixture
async def client(
    creator_settings: CreatorSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(creator_settings), signing_key) as http:
        yield http


@pytest.fixture(scope="session")
async def creator_db(creator_settings: CreatorSettings) -> AsyncIterator[Database]:
    """Direct access as the creator's own role, as the worker has."""
    database = Database(creator_settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def campaign_created() -> Callable[[UUID], Envelope]:
    """A fresh planner ``campaign.created`` envelope for a new campaign of ``tenant``."""

    def envelope(tenant_id: UUID) -> Envelope:
        campaign_id = uuid4()
        event = CampaignCreated(
            campaign_id=campaign_id,
            name="Spring sale",
            goal="Fill the terrace on weekday afternoons",
            channels=["instagram", "email"],
            starts_on=date(2026, 3, 1),
            ends_on=date(2026, 3, 31),
        )
        return new_event(event, source="planner", tenant_id=tenant_id, subject=str(campaign_id))

    return envelope


@pytest.fixture
def deliver(creator_db: Database) -> Callable[[Envelope], Awaitable[None]]:
    """Apply an envelope with the handler in its own committed transaction, as the worker does."""

    async def apply(envelope: Envelope) -> None:
        async with creator_db.transaction() as session:
            await on_campaign_created(session, envelope)

    return apply


@pytest.fixture
def briefs_of(creator_db: Database) -> Callable[[UUID], Awaitable[list[CampaignBrief]]]:
    """The stored briefs of one campaign, whatever their tenant."""

    async def read(campaign_id: UUID) -> list[CampaignBrief]:
        async with creator_db.transaction() as session:
            query = select(CampaignBrief).where(col(CampaignBrief.campaign_id) == campaign_id)
            return list((await session.scalars(query)).all())

    return read


# ---- engines -----------------------------------------------------------------------------
@pytest.fixture
def engine_box(creator_settings: CreatorSettings) -> Fernet:
    """What the engines' secrets and API keys are encrypted with."""
    return fernet_for(creator_settings.secret_key, ENGINE_SECRETS)


@pytest.fixture
async def private_client(
    creator_settings: CreatorSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a deployment that allows private destinations (stand-in workflows listen
    on 127.0.0.1)."""
    allowing = creator_settings.model_copy(update={"allow_private_destinations": True})
    async with trusting_client(create_app(allowing), signing_key) as http:
        yield http


@pytest.fixture
async def strict_client(
    creator_settings: CreatorSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a deployment that refuses private destinations, whatever the environment."""
    strict = creator_settings.model_copy(update={"allow_private_destinations": False})
    async with trusting_client(create_app(strict), signing_key) as http:
        yield http


@pytest.fixture
def stored_engine(creator_db: Database) -> Callable[[UUID], Awaitable[EngineSettings | None]]:
    """The tenant's stored engine row, as the database holds it (None: never set)."""

    async def read(tenant_id: UUID) -> EngineSettings | None:
        async with creator_db.transaction() as session:
            return await session.get(EngineSettings, tenant_id)

    return read
