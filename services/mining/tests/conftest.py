"""Mining test fixtures: the app on the session's real database, trusted identities, a
stand-in for billing's quota answers, and the workflows' secret box."""

from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from sqlalchemy import update

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.messaging import connect
from bai_platform.secrets import fernet_for
from bai_platform.testing import settings_for, trusting_client
from bai_platform.testing_billing import BillingStandIn, billing_stand_in
from mining.app import create_app
from mining.models import ExtractionJob
from mining.settings import MiningSettings
from mining.workflows import SECRETS_PURPOSE


@pytest.fixture(scope="session")
def mining_settings(migrated: Stack) -> MiningSettings:
    return settings_for(MiningSettings, migrated, "mining")


@pytest.fixture(scope="session")
def identity_audience(mining_settings: MiningSettings) -> str:
    """The audience ``identity_for`` mints for: the one this service accepts."""
    return mining_settings.identity_audience


@pytest.fixture
async def client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(mining_settings), signing_key) as http:
        yield http


@pytest.fixture
async def private_client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a deployment that allows private destinations (stand-in workflows listen
    on 127.0.0.1)."""
    allowing = mining_settings.model_copy(update={"allow_private_destinations": True})
    async with trusting_client(create_app(allowing), signing_key) as http:
        yield http


@pytest.fixture(scope="session")
async def mining_db(mining_settings: MiningSettings) -> AsyncIterator[Database]:
    database = Database(mining_settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def end_the_tests_jobs(mining_db: Database, tenant: UUID) -> AsyncIterator[None]:
    """Jobs the test left queued or running are ended, so later tests' passes leave them be."""
    yield
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(
                ExtractionJob.tenant_id == tenant, ExtractionJob.state.in_(("queued", "running"))
            )
            .values(state="cancelled", problems=["ended by the test"])
        )


@pytest.fixture
def workflow_box(mining_settings: MiningSettings) -> Fernet:
    """What the workflows' secrets are encrypted with."""
    return fernet_for(mining_settings.secret_key, SECRETS_PURPOSE)


# ---- billing, stood in -------------------------------------------------------------------
@pytest.fixture
async def nats_client(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="mining-tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def billing(nats_client: NatsClient) -> AsyncIterator[BillingStandIn]:
    balances = {"extraction_pages": 480}
    async with billing_stand_in(nats_client, balances=balances, reason="20 needed, 3 left") as b:
        yield b
