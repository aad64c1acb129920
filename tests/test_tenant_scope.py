"""A request's session sees only the caller's workspace, whatever its queries forget.

Every table with a ``tenant_id`` is ``TenantOwned`` (so a table added tomorrow cannot
slip out), and on the real PostgreSQL a session scoped to one workspace reads, counts,
joins, updates and deletes only that workspace's rows, with queries that name no
workspace at all. An unscoped session (a worker's) still sees every workspace.
"""

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import col

from bai_platform.db import REQUEST_STATE, TenantOwned
from bai_platform.devstack import Stack
from planner.models import Brand, Campaign

SCOPED_SERVICES = ("planner", "creator", "mining", "billing")


def _mapped_classes(service: str) -> list[type[Any]]:
    module = __import__(f"{service}.models", fromlist=["*"])
    base = getattr(module, f"{service.capitalize()}Table")
    return [mapper.class_ for mapper in base._sa_registry.mappers]


@pytest.mark.parametrize("service", SCOPED_SERVICES)
def test_every_table_with_a_tenant_id_is_tenant_owned(service: str) -> None:
    classes = _mapped_classes(service)
    with_tenant = {cls.__name__ for cls in classes if "tenant_id" in cls.__table__.columns}
    owned = {cls.__name__ for cls in classes if issubclass(cls, TenantOwned)}

    assert with_tenant
    assert owned == with_tenant


def test_the_gateways_tables_span_workspaces_and_are_not_scoped() -> None:
    # A person belongs to several workspaces: signing in and switching read across them.
    assert not any(issubclass(cls, TenantOwned) for cls in _mapped_classes("gateway"))


@pytest.fixture
async def sessions(migrated: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(
        migrated.database_url("planner"),
        connect_args={"server_settings": {"search_path": "planner"}},
    )
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


def _brand(tenant: UUID, name: str) -> Brand:
    return Brand(
        tenant_id=tenant,
        name=name,
        timezone="UTC",
        default_channels=[],
        voice={},
        created_by="test",
    )


@pytest.fixture
async def two_workspaces(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[UUID, UUID]]:
    """Two workspaces with a brand and a campaign each, written by an unscoped session."""
    ours, theirs = uuid4(), uuid4()
    async with sessions() as session, session.begin():
        for tenant in (ours, theirs):
            brand = _brand(tenant, f"brand {tenant}")
            session.add(brand)
            await session.flush()
            session.add(Campaign(tenant_id=tenant, brand_id=brand.id, name="c", created_by="test"))
    yield ours, theirs
    async with sessions() as session, session.begin():
        await session.execute(delete(Campaign).where(col(Campaign.tenant_id).in_((ours, theirs))))
        await session.execute(delete(Brand).where(col(Brand.tenant_id).in_((ours, theirs))))


def _scoped(sessions: async_sessionmaker[AsyncSession], tenant: UUID) -> AsyncSession:
    # What the request's session carries once require_identity has verified the caller.
    return sessions(info={REQUEST_STATE: SimpleNamespace(tenant_id=tenant)})


async def test_a_scoped_session_reads_counts_and_joins_only_its_workspace(
    sessions: async_sessionmaker[AsyncSession], two_workspaces: tuple[UUID, UUID]
) -> None:
    ours, theirs = two_workspaces
    pair = col(Brand.tenant_id).in_(two_workspaces)
    async with _scoped(sessions, ours) as session:
        brands = (await session.scalars(select(Brand).where(pair))).all()
        counted = await session.scalar(select(func.count()).select_from(Brand).where(pair))
        joined = (
            await session.execute(select(col(Campaign.tenant_id), col(Brand.tenant_id)).join(Brand))
        ).all()
        their_brand = await session.scalar(
            select(col(Brand.id)).where(col(Brand.tenant_id) == theirs).limit(1)
        )

    assert {brand.tenant_id for brand in brands} == {ours}
    assert counted == 1
    assert set(joined) == {(ours, ours)}
    assert their_brand is None


async def test_a_scoped_session_updates_and_deletes_only_its_workspace(
    sessions: async_sessionmaker[AsyncSession], two_workspaces: tuple[UUID, UUID]
) -> None:
    ours, theirs = two_workspaces
    brands, campaigns = (col(table.tenant_id).in_(two_workspaces) for table in (Brand, Campaign))
    async with _scoped(sessions, ours) as session, session.begin():
        # Both workspaces' rows match (and only theirs: the database is shared by the suite).
        await session.execute(update(Brand).where(brands).values(name="renamed"))
        await session.execute(delete(Campaign).where(campaigns))

    async with sessions() as session:
        names = dict(
            (
                await session.execute(select(col(Brand.tenant_id), col(Brand.name)).where(brands))
            ).all()
        )
        left = (await session.scalars(select(col(Campaign.tenant_id)).where(campaigns))).all()
    assert names == {ours: "renamed", theirs: f"brand {theirs}"}
    assert left == [theirs]


async def test_an_unscoped_session_sees_every_workspace(
    sessions: async_sessionmaker[AsyncSession], two_workspaces: tuple[UUID, UUID]
) -> None:
    async with sessions() as session:
        tenants = (
            await session.scalars(
                select(col(Brand.tenant_id)).where(col(Brand.tenant_id).in_(two_workspaces))
            )
        ).all()

    assert sorted(tenants) == sorted(two_workspaces)
