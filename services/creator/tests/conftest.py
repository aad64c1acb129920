"""Creator test fixtures: the app on the session's real database, trusted identities, reads.

The app trusts one test signing key (as it would trust the gateway's JWKS); tests mint
``X-BAI-Identity`` tokens with it. Every test works in fresh tenants and campaigns: the
database is shared by the whole session.
"""

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr
from sqlalchemy import select

from bai_contracts import CampaignCreated
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope, new_event
from bai_platform.identity import IDENTITY_HEADER, mint_identity
from bai_platform.testing import app_client
from creator.app import create_app
from creator.events import on_campaign_created
from creator.models import CampaignBrief
from creator.settings import CreatorSettings

TEST_KID = "test"
UNREACHABLE_JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"


def jwks_for(key: Ed25519PrivateKey, kid: str = TEST_KID) -> dict[str, Any]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
    return {"keys": [jwk]}


@pytest.fixture(scope="session")
def creator_settings(migrated: Stack) -> CreatorSettings:
    return CreatorSettings(
        database_url=SecretStr(migrated.database_url("creator")),
        nats_url=migrated.nats_url,
        environment="test",
        # Nothing answers here: only keys handed over with ``use_keys`` are trusted.
        identity_jwks_url=UNREACHABLE_JWKS_URL,
    )


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    """The key the app under test trusts, standing in for the gateway's."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def client(
    creator_settings: CreatorSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(creator_settings)
    async with app_client(app) as http:
        app.state.identity_verifier.use_keys(jwks_for(signing_key))
        yield http


@pytest.fixture
def tenant() -> UUID:
    return uuid4()


@pytest.fixture
def identity_for(signing_key: Ed25519PrivateKey) -> Callable[[UUID, str], dict[str, str]]:
    """Headers carrying a valid identity of a user with ``role`` in ``tenant``."""

    def headers(tenant_id: UUID, role: str) -> dict[str, str]:
        token = mint_identity(
            key=signing_key,
            kid=TEST_KID,
            issuer="bai-gateway",
            audience="bai-services",
            subject=f"user-{uuid4().hex[:12]}",
            tenant_id=tenant_id,
            roles=[role],
            scopes=["api"],
            credential="user",
        )
        return {IDENTITY_HEADER: token}

    return headers


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
            query = select(CampaignBrief).where(CampaignBrief.campaign_id == campaign_id)
            return list((await session.scalars(query)).all())

    return read
