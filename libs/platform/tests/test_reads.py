"""ReadQuery: compiled once, scoped to the request's workspace, failing as SQLAlchemy would.

Run on the session's real PostgreSQL, in a schema of the test's own.
"""

from collections.abc import AsyncIterator
from types import SimpleNamespace
from uuid import UUID, uuid4

import pytest
from pydantic import SecretStr
from sqlalchemy import (
    ARRAY,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bai_platform.db import REQUEST_STATE, Database
from bai_platform.devstack import Stack
from bai_platform.errors import database_trouble
from bai_platform.reads import TENANT, ReadQuery
from bai_platform.settings import ServiceSettings
from bai_testing.plugin import superuser_async_url

SCHEMA = "reads_test"
metadata = MetaData(schema=SCHEMA)
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("tags", ARRAY(String)),
    Column("doc", JSONB),
)
shared = Table("shared", metadata, Column("id", Integer, primary_key=True))

OWN = items.c.tenant_id == bindparam(TENANT)
ITEMS = ReadQuery(select(items.c.id, items.c.tags, items.c.doc).where(OWN).order_by(items.c.id))
ONE = ReadQuery(select(items.c.id).where(OWN, items.c.id == bindparam("item_id")))
SLOW = ReadQuery(select(func.pg_sleep(bindparam("seconds")).label("slept")).where(OWN))
BACKEND = ReadQuery(select(func.pg_backend_pid().label("pid")))
ACME, GLOBEX = uuid4(), uuid4()


@pytest.fixture
async def database(infra: Stack) -> AsyncIterator[Database]:
    settings = ServiceSettings(
        service_name="readquerytest",
        database_url=SecretStr(superuser_async_url(infra)),
        db_statement_timeout_ms=500,
    )
    db = Database(settings)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            items.insert(),
            [
                {"id": 1, "tenant_id": ACME, "tags": ["a", "b"], "doc": {"k": [1, 2]}},
                {"id": 2, "tenant_id": GLOBEX, "tags": [], "doc": None},
                {"id": 3, "tenant_id": ACME, "tags": None, "doc": {"k": None}},
            ],
        )
    try:
        yield db
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
        await db.dispose()


def _read_session(db: Database, tenant: UUID | None) -> AsyncSession:
    return db.read_sessionmaker(info={REQUEST_STATE: SimpleNamespace(tenant_id=tenant)})


async def test_a_read_sees_only_the_requests_workspace_with_decoded_values(
    database: Database,
) -> None:
    async with _read_session(database, ACME) as session:
        rows = await ITEMS.all(session)
        assert rows == [
            {"id": 1, "tags": ["a", "b"], "doc": {"k": [1, 2]}},
            {"id": 3, "tags": None, "doc": {"k": None}},
        ]
        assert await ONE.first(session, item_id=2) is None  # Globex's: as unknown as missing
    async with _read_session(database, GLOBEX) as session:
        assert await ONE.first(session, item_id=2) == {"id": 2}


def test_a_read_of_a_workspace_table_must_be_scoped_by_the_tenant_parameter() -> None:
    with pytest.raises(ValueError, match=r"reads_test\.items must compare tenant_id"):
        ReadQuery(select(items.c.id).where(items.c.id == bindparam("item_id")))
    with pytest.raises(ValueError, match="tenant_id"):  # a join reads the table too
        ReadQuery(select(shared.c.id).join(items, items.c.id == shared.c.id))
    ReadQuery(select(shared.c.id))  # a table without tenant_id needs no scope


async def test_the_tenant_is_the_requests_never_an_argument(database: Database) -> None:
    async with _read_session(database, ACME) as session:
        with pytest.raises(TypeError, match="never an argument"):
            await ITEMS.all(session, tenant_id=GLOBEX)
        with pytest.raises(TypeError, match="'item_id'"):
            await ONE.first(session)
    async with _read_session(database, None) as session:
        with pytest.raises(RuntimeError, match="identity"):
            await ITEMS.all(session)


async def test_a_read_refuses_a_write_session(database: Database) -> None:
    state = SimpleNamespace(tenant_id=ACME)
    async with database.sessionmaker(info={REQUEST_STATE: state}) as session:
        with pytest.raises(RuntimeError, match="read session"):
            await ITEMS.all(session)


async def test_a_statement_timeout_is_contention(database: Database) -> None:
    async with _read_session(database, ACME) as session:
        with pytest.raises(DBAPIError) as caught:
            await SLOW.all(session, seconds=5.0)
    assert database_trouble(caught.value) == "contention"


async def test_a_connection_the_server_ended_fails_one_read_and_is_replaced(
    infra: Stack, database: Database
) -> None:
    """Dropped while in steady use (not pinged: it was just used), as a restart would."""
    async with _read_session(database, ACME) as session:
        pid = (await BACKEND.all(session))[0]["pid"]
    admin = create_async_engine(superuser_async_url(infra))  # not one of the pool's
    async with admin.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await admin.dispose()
    async with _read_session(database, ACME) as session:  # the pool hands it out again
        with pytest.raises(DBAPIError) as caught:
            await ITEMS.all(session)
    assert database_trouble(caught.value) == "unreachable"
    assert caught.value.connection_invalidated
    async with _read_session(database, ACME) as session:  # the pool opened a new one
        assert [row["id"] for row in await ITEMS.all(session)] == [1, 3]
        assert (await BACKEND.all(session))[0]["pid"] != pid
