"""Mining test fixtures: the app on the session's real database, trusted identities."""

from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.testing import settings_for, trusting_client
from mining.app import create_app
from mining.settings import MiningSettings


@pytest.fixture(scope="session")
def mining_settings(migrated: Stack) -> MiningSettings:
    return settings_for(MiningSettings, migrated, "mining")


@pytest.fixture
async def client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(mining_settings), signing_key) as http:
        yield http


@pytest.fixture(scope="session")
async def mining_db(mining_settings: MiningSettings) -> AsyncIterator[Database]:
    database = Database(mining_settings)
    try:
        yield database
    finally:
        await database.dispose()
