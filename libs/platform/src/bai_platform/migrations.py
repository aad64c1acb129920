"""Alembic wiring shared by every service: the version table lives in the service's schema.

A service's ``migrations/env.py`` is two lines: import its metadata, call ``run_env``.

Invariant: one service's migrations never run twice at once. Every run takes a
transaction-scoped advisory lock named after the schema before it reads the version table,
so replicas that start together (Kubernetes init containers) queue: the first upgrades,
the others then find the schema at head and do nothing.
"""

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bai_platform.settings import ServiceSettings


def alembic_config(settings: ServiceSettings, script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["url"] = settings.database_url.get_secret_value()
    config.attributes["schema"] = settings.schema_name
    return config


def upgrade(settings: ServiceSettings, script_location: Path, revision: str = "head") -> None:
    """Bring the service's schema to ``revision``."""
    command.upgrade(alembic_config(settings, script_location), revision)


def migration_lock_key(schema: str) -> str:
    return f"bai-migrations:{schema}"


def _configure_and_run(connection: Connection, metadata: MetaData, schema: str) -> None:
    # Held until the surrounding transaction commits (``_run_online``), after the upgrade.
    connection.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": migration_lock_key(schema)},
    )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=False,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(metadata: MetaData) -> None:
    attributes = context.config.attributes
    schema: str = attributes["schema"]
    engine = create_async_engine(
        attributes["url"],
        poolclass=pool.NullPool,
        connect_args={"server_settings": {"search_path": schema}},
    )
    async with engine.connect() as connection:
        await connection.run_sync(_configure_and_run, metadata, schema)
        await connection.commit()
    await engine.dispose()


def run_env(metadata: MetaData) -> None:
    """Body of a service's ``env.py``; online mode only, against the configured URL."""
    asyncio.run(_run_online(metadata))


def create_messaging_tables(schema: str) -> None:
    """The outbox and inbox tables, for a service's first migration."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        schema=schema,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["created_at"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
        schema=schema,
    )


def drop_messaging_tables(schema: str) -> None:
    op.drop_table("inbox", schema=schema)
    op.drop_table("outbox", schema=schema)


def create_idempotency_table(schema: str) -> None:
    """Stored answers of POSTs carrying Idempotency-Key (see ``bai_platform.idempotency``)."""
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_headers", JSONB(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("owner", "key", name="pk_idempotency_keys"),
        schema=schema,
    )
