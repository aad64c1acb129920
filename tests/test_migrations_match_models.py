"""Every service's migrations build exactly the tables its models declare: columns, types,
nullability, indexes and constraints (alembic's autogenerate comparison finds nothing)."""

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from bai_platform.devstack import Stack

SERVICES = ["gateway", "planner", "creator", "mining", "billing"]


def _base(service: str) -> type[SQLModel]:
    """The service's table base (``PlannerTable``, ...): its own registry and metadata."""
    module = __import__(f"{service}.models", fromlist=["*"])
    base: type[SQLModel] = getattr(module, f"{service.capitalize()}Table")
    return base


def _metadata(service: str) -> MetaData:
    metadata: MetaData = _base(service).metadata
    return metadata


@pytest.mark.parametrize("service", SERVICES)
def test_every_table_of_a_service_is_a_sqlmodel_table(service: str) -> None:
    base = _base(service)
    mapped = {table.name for mapper in base._sa_registry.mappers for table in mapper.tables}
    tables = {table.name for table in base.metadata.sorted_tables}

    assert all(issubclass(m.class_, SQLModel) for m in base._sa_registry.mappers)
    # The platform's tables (outbox, inbox, idempotency keys) too: each service declares
    # them from bai_platform's records.
    assert tables == mapped
    assert {"outbox", "inbox"} <= mapped


@pytest.mark.parametrize("service", SERVICES)
async def test_the_migrated_schema_is_the_models_schema(migrated: Stack, service: str) -> None:
    metadata = _metadata(service)
    # With the service's schema off the search path it is reflected by name, as the models
    # name it (alembic reports the default schema as None, which would never match).
    engine = create_async_engine(
        migrated.database_url(service), connect_args={"server_settings": {"search_path": "public"}}
    )

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, kind, _parent: kind != "schema" or name == service,
                "compare_type": True,
                "compare_server_default": False,
            },
        )
        found: list[Any] = compare_metadata(context, metadata)
        # alembic's own bookkeeping table is not a model.
        return [d for d in found if "alembic_version" not in repr(d)]

    try:
        async with engine.connect() as connection:
            drift = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    assert drift == [], f"{service}: migrations and models differ: {drift}"
