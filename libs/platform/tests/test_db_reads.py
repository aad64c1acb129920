"""Read sessions run their statements without a transaction around them; writes keep one."""

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.settings import ServiceSettings
from bai_testing.plugin import superuser_async_url


@pytest.fixture
async def database(infra: Stack) -> AsyncIterator[Database]:
    settings = ServiceSettings(
        service_name="readtest", database_url=SecretStr(superuser_async_url(infra))
    )
    db = Database(settings)
    try:
        yield db
    finally:
        await db.dispose()


async def _in_transaction(session: AsyncSession) -> bool:
    await session.execute(text("SELECT 1"))
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return bool(driver.is_in_transaction())


async def test_a_read_session_sends_no_begin(database: Database) -> None:
    async with database.read_sessionmaker() as session:
        assert not await _in_transaction(session)


async def test_a_write_session_still_runs_in_a_transaction(database: Database) -> None:
    async with database.sessionmaker() as session:
        assert await _in_transaction(session)


async def test_the_write_pool_is_not_left_in_autocommit_by_a_read(database: Database) -> None:
    async with database.read_sessionmaker() as session:
        await session.execute(text("SELECT 1"))
    async with database.sessionmaker() as session:  # the same pooled connection, reused
        assert await _in_transaction(session)
