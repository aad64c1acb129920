"""Billing test fixtures: the session's real database as billing's own role."""

from collections.abc import AsyncIterator

import pytest

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.testing import settings_for
from billing.settings import BillingSettings


@pytest.fixture(scope="session")
def billing_settings(migrated: Stack) -> BillingSettings:
    return settings_for(BillingSettings, migrated, "billing")


@pytest.fixture(scope="session")
async def billing_db(billing_settings: BillingSettings) -> AsyncIterator[Database]:
    database = Database(billing_settings)
    try:
        yield database
    finally:
        await database.dispose()
