"""Billing test fixtures: the session's real database as billing's own role."""

from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_testing.plugin import settings_for, trusting_client
from billing.app import create_app
from billing.settings import BillingSettings


@pytest.fixture(scope="session")
def billing_settings(migrated: Stack) -> BillingSettings:
    return settings_for(BillingSettings, migrated, "billing")


@pytest.fixture(scope="session")
def identity_audience(billing_settings: BillingSettings) -> str:
    """The audience ``identity_for`` mints for: the one this service accepts."""
    return billing_settings.identity_audience


@pytest.fixture(scope="session")
async def billing_db(billing_settings: BillingSettings) -> AsyncIterator[Database]:
    database = Database(billing_settings)
    try:
        yield database
    finally:
        await database.dispose()


WEBHOOK_SECRET = "whsec_test_current_0123456789abcdef"
OLD_WEBHOOK_SECRET = "whsec_test_previous_0123456789abcdef"


@pytest.fixture(scope="session")
def webhook_settings(billing_settings: BillingSettings) -> BillingSettings:
    """Billing that accepts events signed by either secret (one is being rolled)."""
    return billing_settings.model_copy(
        update={
            "stripe_webhook_secrets": [SecretStr(WEBHOOK_SECRET), SecretStr(OLD_WEBHOOK_SECRET)]
        }
    )


@pytest.fixture
async def webhook_client(
    webhook_settings: BillingSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(webhook_settings), signing_key) as http:
        yield http
