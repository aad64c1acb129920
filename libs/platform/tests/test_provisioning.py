"""One database, one schema and one role per service; each role reaches only its schema."""

import asyncio
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from bai_platform.devstack import ComponentFailed, Stack, StackSettings


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def test_a_service_role_cannot_read_another_services_schema(migrated: Stack) -> None:
    conn = await asyncpg.connect(_plain(migrated.database_url("planner")))
    try:
        assert await conn.fetchval("SELECT count(*) FROM campaigns") >= 0  # its own: fine
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM gateway.users")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.sneaky (id int)")
    finally:
        await conn.close()


async def test_a_service_role_owns_its_schema_and_search_path(migrated: Stack) -> None:
    conn = await asyncpg.connect(_plain(migrated.database_url("creator")))
    try:
        assert await conn.fetchval("SHOW search_path") == "creator"
        await conn.execute("CREATE TEMP TABLE scratch (id int)")
    finally:
        await conn.close()


async def test_external_database_url_is_provisioned_instead_of_starting_a_server(
    infra: Stack, tmp_path: Path
) -> None:
    admin = await asyncpg.connect(infra.admin_dsn("postgres"))
    try:
        await admin.execute("DROP ROLE IF EXISTS ext_admin")
        await admin.execute("CREATE ROLE ext_admin LOGIN SUPERUSER PASSWORD 'ext-admin-pw'")
    finally:
        await admin.close()
    url = f"postgresql://ext_admin:ext-admin-pw@127.0.0.1:{infra.settings.postgres_port}/postgres"
    # Same state folder: role passwords are per cluster, and this cluster is shared.
    external = Stack(
        StackSettings(
            state_dir=infra.state_dir, database_url=SecretStr(url), database="bai_external"
        )
    )
    await asyncio.to_thread(external.start, ["postgres"])  # the supervisor is synchronous
    assert external.processes == {}
    conn = await asyncpg.connect(_plain(external.database_url("mining")))
    try:
        assert await conn.fetchval("SELECT current_database()") == "bai_external"
    finally:
        await conn.close()


def test_external_nats_url_starts_no_server(tmp_path: Path) -> None:
    stack = Stack(StackSettings(state_dir=tmp_path, nats_url="nats://127.0.0.1:1"))
    stack.start(only=["nats"])
    assert stack.processes == {}
    assert stack.nats_url == "nats://127.0.0.1:1"


def test_unusable_external_database_stops_the_start_with_the_reason(
    infra: Stack, tmp_path: Path
) -> None:
    port = infra.settings.postgres_port
    url = SecretStr(f"postgresql://nobody:wrong-password@127.0.0.1:{port}/postgres")
    stack = Stack(StackSettings(state_dir=tmp_path, database_url=url))
    with pytest.raises(ComponentFailed, match="provisioning failed"):
        stack.start(only=["postgres"])
