"""Planner test fixtures: the app on the session's real database, trusted identities, reads.

The app trusts one test signing key (as it would trust the gateway's JWKS); tests mint
``X-BAI-Identity`` tokens with it. Every test works in fresh tenants: the database is
shared by the whole session.
"""

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr
from sqlalchemy import select

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.identity import IDENTITY_HEADER, mint_identity
from bai_platform.testing import app_client
from planner.app import create_app
from planner.models import Campaign, outbox
from planner.settings import PlannerSettings

TEST_KID = "test"
UNREACHABLE_JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"


def jwks_for(key: Ed25519PrivateKey, kid: str = TEST_KID) -> dict[str, Any]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
    return {"keys": [jwk]}


@pytest.fixture(scope="session")
def planner_settings(migrated: Stack) -> PlannerSettings:
    return PlannerSettings(
        database_url=SecretStr(migrated.database_url("planner")),
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
    planner_settings: PlannerSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(planner_settings)
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
            query = select(Campaign).where(Campaign.tenant_id == tenant_id)
            return list((await session.scalars(query)).all())

    return read


@pytest.fixture
def outbox_of(planner_db: Database) -> Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]:
    """Every outbox row whose envelope names the tenant, as (row subject, envelope)."""

    async def read(tenant_id: UUID) -> list[tuple[str, Envelope]]:
        async with planner_db.transaction() as session:
            rows = (await session.execute(select(outbox.c.subject, outbox.c.payload))).all()
        pairs = [(row.subject, Envelope.model_validate_json(row.payload)) for row in rows]
        return [(subject, e) for subject, e in pairs if e.tenantid == str(tenant_id)]

    return read
