"""Every service's migrations build exactly the tables its models declare: columns, types,
nullability, indexes and constraints (alembic's autogenerate comparison finds nothing)."""

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from bai_platform.devstack import Stack


def _metadata(service: str) -> MetaData:
    module = __import__(f"{service}.models", fromlist=["Base"])
    metadata: MetaData = module.Base.metadata
    return metadata


@pytest.mark.parametrize("service", ["gateway", "planner", "creator", "mining", "billing"])
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
