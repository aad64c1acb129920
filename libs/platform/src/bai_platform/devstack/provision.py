"""One database, and per service one login role that may touch only its own schema."""

import asyncio
import json
import secrets
from pathlib import Path
from urllib.parse import quote

import asyncpg

from bai_platform.devstack.config import SERVICES


def service_passwords(state_dir: Path) -> dict[str, str]:
    """Random per-service database passwords, kept in the state folder."""
    return stored_passwords(state_dir / "secrets.json", SERVICES)


def nats_passwords(state_dir: Path, users: tuple[str, ...]) -> dict[str, str]:
    """Random NATS passwords by user (each service and the admin), kept beside them."""
    return stored_passwords(state_dir / "nats-secrets.json", users)


def stored_passwords(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Random passwords for ``names``, made once and kept in ``path`` (mode 600)."""
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if set(names) <= stored.keys():
            return stored
    passwords = {name: secrets.token_hex(16) for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(passwords, indent=2))
    return passwords


def service_database_url(
    *, host: str, port: int, database: str, service: str, password: str
) -> str:
    return f"postgresql+asyncpg://{service}:{quote(password)}@{host}:{port}/{database}"


async def _ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def _role_sql(service: str, password: str, database: str) -> list[str]:
    # Identifiers and passwords are ours (service names, hex), so inlining them is safe.
    return [
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{service}') THEN
                CREATE ROLE "{service}" LOGIN PASSWORD '{password}';
              ELSE
                ALTER ROLE "{service}" LOGIN PASSWORD '{password}';
              END IF;
            END $$""",
        f'CREATE SCHEMA IF NOT EXISTS "{service}" AUTHORIZATION "{service}"',
        f'REVOKE ALL ON SCHEMA "{service}" FROM PUBLIC',
        f'ALTER ROLE "{service}" IN DATABASE "{database}" SET search_path = "{service}"',
        f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO "{service}"',
    ]


async def provision(
    admin_dsn_for: dict[str, str], *, database: str, passwords: dict[str, str]
) -> None:
    """Create the database, the schemas and the roles; safe to run on every start."""
    await _ensure_database(admin_dsn_for["postgres"], database)
    conn = await asyncpg.connect(admin_dsn_for[database])
    try:
        await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for service in SERVICES:
            for statement in _role_sql(service, passwords[service], database):
                await conn.execute(statement)
    finally:
        await conn.close()


def provision_sync(
    admin_dsn_for: dict[str, str], *, database: str, passwords: dict[str, str]
) -> None:
    asyncio.run(provision(admin_dsn_for, database=database, passwords=passwords))
