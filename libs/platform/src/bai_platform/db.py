"""Async PostgreSQL access: one engine per service schema, one session per request.

Services flush, never commit: the request's session commits at the edge (``session``
dependency) or the worker's unit of work commits (``Database.transaction``). Every
connection's ``search_path`` is the service's schema, and the service's role may touch
nothing else.

A request's session sees only the caller's workspace: once the request's identity is
verified, every ORM SELECT, UPDATE and DELETE of a ``TenantOwned`` table in that session
gets ``tenant_id = <the caller's>`` added (``with_loader_criteria``, SQLAlchemy's global
criteria), joins and relationship loads included. So a query that forgets the workspace
still cannot read or change another's rows. Workers and RPC handlers act for the system
and see every workspace; their queries say which rows they mean.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Table, column, event, func, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, declared_attr, registry, with_loader_criteria
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, SQLModel

from bai_platform.app_state import platform_of
from bai_platform.errors import ServiceError
from bai_platform.settings import ServiceSettings

# The largest PostgreSQL integer and bigint: bound every integer a client gives that is
# compared with such a column (Path(le=...), Query(le=...)), or asyncpg refuses the value
# and the client gets a 500 instead of a 422.
PG_INTEGER_MAX = 2**31 - 1
PG_BIGINT_MAX = 2**63 - 1

# deadlock_detected and serialization_failure: PostgreSQL ended the statement's transaction
# so that another could go on; the same work may simply be done again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
T = TypeVar("T")
_jitter = random.SystemRandom()

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata(schema: str) -> MetaData:
    """MetaData for a service's tables, in its schema, with stable constraint names."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def table_registry(schema: str) -> registry:
    """The registry of one service's SQLModel tables, so each keeps its own metadata.

    ``class PlannerTable(SQLModel, registry=table_registry("planner"))`` is the service's
    base; its tables are ``class Brand(PlannerTable, table=True)``.
    """
    return registry(metadata=make_metadata(schema))


def table_of(model: type[SQLModel]) -> Table:
    """A SQLModel table class's table, for Core statements over it."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table (table=True)")
    return table


def timestamp(*, nullable: bool = False, default: datetime | None = None) -> Any:
    """A ``timestamptz`` field (``datetime | None`` when ``nullable``)."""
    return Field(default=default, sa_type=DateTime(timezone=True), nullable=nullable)


def created_now() -> Any:
    """A ``timestamptz NOT NULL DEFAULT now()`` field, filled in by PostgreSQL on insert.

    It reads ``None`` on an instance until the row is flushed and refreshed; SQLAlchemy
    leaves a ``None`` out of the INSERT, so the server default applies.
    """
    return Field(
        default=None,
        sa_type=DateTime(timezone=True),
        nullable=False,
        sa_column_kwargs={"server_default": func.now()},
    )


# session.info key: the request's state, whose ``tenant_id`` (set once the identity is
# verified, ``bai_platform.identity.require_identity``) scopes the session's statements.
REQUEST_STATE = "bai.request_state"


class _OnlyForTheCriteria(declared_attr[Any]):
    """The mixin's ``tenant_id``, seen only where SQLAlchemy analyses the scope's criteria.

    ``with_loader_criteria`` first calls its lambda with the mixin itself, reading
    declared attributes through ``fget``; everything else (pydantic's field collection,
    the declarative scan, ``hasattr``) finds nothing here, so each table's own field rules.
    """

    def __get__(self, instance: object, owner: Any = None) -> Any:
        raise AttributeError("tenant_id")


class TenantOwned:
    """A table whose every row belongs to one workspace (its ``tenant_id``).

    Mix it into the model; a request's session then never sees another workspace's rows.
    ``tests/test_tenant_scope.py`` checks that every table with a ``tenant_id`` has it.
    Each table declares its own ``tenant_id`` field.
    """

    if TYPE_CHECKING:
        tenant_id: UUID
    else:
        tenant_id = _OnlyForTheCriteria(lambda cls: column("tenant_id"))


@event.listens_for(OrmSession, "do_orm_execute")
def _only_the_callers_workspace(state: ORMExecuteState) -> None:
    tenant = getattr(state.session.info.get(REQUEST_STATE), "tenant_id", None)
    if tenant is None:
        return
    loading = state.is_column_load or state.is_relationship_load  # scoped with their parent
    if (state.is_select and not loading) or state.is_update or state.is_delete:
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantOwned,
                lambda cls: cls.tenant_id == tenant,
                include_aliases=True,
            )
        )


def _engine(url: str, settings: ServiceSettings) -> AsyncEngine:
    server_settings = {
        "search_path": settings.schema_name,
        "application_name": settings.service_name,
        "statement_timeout": str(settings.db_statement_timeout_ms),
    }
    idle = settings.db_ping_after_idle_seconds
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=idle == 0,
        # The connection handed back last goes out first: under light load the same few
        # stay busy (never pinged) and the rest idle, to be pinged once they are used again.
        pool_use_lifo=True,
        connect_args={"server_settings": server_settings},
    )
    if idle > 0:
        _ping_after_idle(engine, idle)
    return engine


_IDLE_SINCE = "bai.idle_since"  # connection record info: when it was last handed back


def _ping_after_idle(engine: AsyncEngine, seconds: float) -> None:
    """Ping a pooled connection before use only when it has been idle ``seconds``.

    A ping on every checkout (``pool_pre_ping``) costs a round trip per request. A
    connection in steady use does not need one: if the server dropped it (a restart), the
    request on it fails as ``database_unavailable`` (503, Retry-After), and SQLAlchemy then
    replaces every connection of the pool that is older than the failure. One that sat
    idle, which a restart, an idle timeout or a middlebox may have closed unseen, is
    checked first and silently replaced.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from_now(_: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _alive_after_idle(dbapi_connection: Any, record: Any, _: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # the pool replaces it and tries again
            raise DisconnectionError(f"a pooled connection idle {seconds:g} s is gone") from exc


class Database:
    """The engines of one service: primary, and a read replica when configured."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.engine = _engine(settings.database_url.get_secret_value(), settings)
        replica = settings.database_read_url
        self.read_engine = _engine(replica.get_secret_value(), settings) if replica else self.engine
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads run without BEGIN and ROLLBACK around them: under READ COMMITTED each
        # statement sees its own snapshot either way, and the two round trips fewer keep a
        # pooled connection busy for less time (an event loop under load makes every round
        # trip long, and the pool ran dry first; bench/load_users.py).
        reads = self.read_engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessionmaker = async_sessionmaker(reads, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block ends and rolls back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


async def retrying_conflicts(
    session: AsyncSession, work: Callable[[], Awaitable[T]], *, attempts: int = 3
) -> T:
    """Do ``work`` in a savepoint of ``session``, again when PostgreSQL ends it for a deadlock
    or a serialization conflict (up to ``attempts`` times, after a short random pause).

    For work that locks several rows another transaction may lock in another order: a
    request putting a month's posts in review meets a worker's batch applying drafts to the
    same posts in the order they were written. PostgreSQL breaks the cycle by ending one of
    the two; the savepoint's rollback releases what this attempt locked, so the other goes
    on, and the next attempt waits for it instead of failing the request. Whatever the
    session did before the savepoint stays; the last conflict is raised as it came.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with session.begin_nested():
                return await work()
        except DBAPIError as exc:
            sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
            if attempt == attempts or sqlstate not in RETRYABLE_SQLSTATES:
                raise
        await asyncio.sleep(_jitter.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    database = platform_of(request).db
    async with database.sessionmaker(info={REQUEST_STATE: request.state}) as session:
        try:
            yield session
        except ServiceError as exc:
            await (session.commit() if exc.keeps_effects else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


async def _request_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    database = platform_of(request).db
    async with database.read_sessionmaker(info={REQUEST_STATE: request.state}) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a failed commit
# becomes an error answer instead of a 201 for data that was never stored.
Session = Annotated[AsyncSession, Depends(_request_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_request_read_session, scope="function")]
