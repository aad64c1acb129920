"""One database, and per service one login role that may touch only its own schema.

Used by the local supervisor on every start and, in Kubernetes, by the provisioning Job:
``python -m bai_platform.provision`` with ``BAI_PROVISION_ADMIN_URL`` (a superuser) and
``BAI_PROVISION_<SERVICE>_URL`` (each service's own database URL, the same Secret value the
service connects with, so a password lives in one place).

Invariants:
- Safe to run again and safe to run twice at once: the role and schema statements run in one
  transaction under a transaction-scoped advisory lock, and a database created by a racing
  run counts as created.
- A role's name is its service's name, which is also its schema and its search path.
"""

import asyncio
import contextlib
from collections.abc import Mapping

import asyncpg
import typer
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

_LOCK_KEY = "bai-provisioning"


class ProvisionError(RuntimeError):
    """The provisioning input is unusable (the reason says which setting)."""


# Identifiers and the password are quoted by PostgreSQL itself (``format`` with %I and %L):
# a password from a Secret may hold any character.
_ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = $1"
_CREATE_ROLE = "CREATE ROLE %I LOGIN PASSWORD %L"
_ALTER_ROLE = "ALTER ROLE %I LOGIN PASSWORD %L"
_SERVICE_STATEMENTS = (
    ("CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I", ("service", "service")),
    ("REVOKE ALL ON SCHEMA %I FROM PUBLIC", ("service",)),
    ("ALTER ROLE %I IN DATABASE %I SET search_path = %I", ("service", "database", "service")),
    ("GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", ("database", "service")),
)


async def _execute_formatted(conn: asyncpg.Connection, template: str, *args: str) -> None:
    statement = await conn.fetchval("SELECT format($1::text, VARIADIC $2::text[])", template, args)
    await conn.execute(statement)


async def _provision_role(
    conn: asyncpg.Connection, service: str, password: str, database: str
) -> None:
    exists = await conn.fetchval(_ROLE_EXISTS, service)
    await _execute_formatted(conn, _ALTER_ROLE if exists else _CREATE_ROLE, service, password)
    names = {"service": service, "database": database}
    for template, fields in _SERVICE_STATEMENTS:
        await _execute_formatted(conn, template, *(names[field] for field in fields))


async def _ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            # A concurrent run may create it first: either error, by timing.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await _execute_formatted(conn, "CREATE DATABASE %I", database)
    finally:
        await conn.close()


async def provision(
    admin_dsn_for: Mapping[str, str], *, database: str, passwords: Mapping[str, str]
) -> None:
    """Create the database, the schemas and the roles; ``admin_dsn_for`` maps a database
    name (``postgres`` and ``database``) to a superuser DSN for it."""
    await _ensure_database(admin_dsn_for["postgres"], database)
    conn = await asyncpg.connect(admin_dsn_for[database])
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _LOCK_KEY)
            await _execute_formatted(conn, "REVOKE ALL ON DATABASE %I FROM PUBLIC", database)
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            for service, password in passwords.items():
                await _provision_role(conn, service, password, database)
    finally:
        await conn.close()


def provision_sync(
    admin_dsn_for: Mapping[str, str], *, database: str, passwords: Mapping[str, str]
) -> None:
    asyncio.run(provision(admin_dsn_for, database=database, passwords=passwords))


def admin_dsn(admin_url: str, database: str) -> str:
    """``admin_url`` pointed at ``database``, in the plain libpq form asyncpg takes."""
    url = make_url(admin_url).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def password_of(service: str, service_url: str) -> str:
    """The password in a service's database URL, whose user must be the service itself."""
    url = make_url(service_url)
    if url.username != service:
        raise ProvisionError(
            f"BAI_PROVISION_{service.upper()}_URL must log in as {service!r}, "
            f"not {url.username!r}: the role is the service's schema and search path"
        )
    if not url.password:
        raise ProvisionError(f"BAI_PROVISION_{service.upper()}_URL has no password")
    return str(url.password)


class ProvisionSettings(BaseSettings):
    """What the provisioning Job reads (``BAI_PROVISION_*``)."""

    model_config = SettingsConfigDict(env_prefix="BAI_PROVISION_", extra="ignore")

    admin_url: SecretStr
    database: str = "bai"
    gateway_url: SecretStr
    planner_url: SecretStr
    creator_url: SecretStr
    mining_url: SecretStr
    billing_url: SecretStr

    def passwords(self) -> dict[str, str]:
        urls: dict[str, SecretStr] = {
            "gateway": self.gateway_url,
            "planner": self.planner_url,
            "creator": self.creator_url,
            "mining": self.mining_url,
            "billing": self.billing_url,
        }
        return {name: password_of(name, url.get_secret_value()) for name, url in urls.items()}

    def admin_dsn_for(self) -> dict[str, str]:
        admin = self.admin_url.get_secret_value()
        return {name: admin_dsn(admin, name) for name in ("postgres", self.database)}


def main() -> None:
    """Provision from the environment; exit 1 with the reason when the input is unusable."""
    try:
        settings = ProvisionSettings()  # every field is read from the environment
        passwords = settings.passwords()
    except (ValueError, ProvisionError) as exc:
        typer.echo(f"provisioning input is unusable: {exc}", err=True)
        raise SystemExit(1) from exc
    provision_sync(settings.admin_dsn_for(), database=settings.database, passwords=passwords)
    typer.echo(f"provisioned database {settings.database!r}: {', '.join(passwords)}")


if __name__ == "__main__":
    main()
