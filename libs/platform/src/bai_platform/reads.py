"""Hot reads: a SELECT compiled once, run by asyncpg on the request's read connection.

A list or a poll through SQLAlchemy spends most of its CPU before and after PostgreSQL:
building the statement and its cache key, the ORM's identity map and loading, and the
result's rows. Profiled under load (bench/README.md), that was half of what the planner
spent per request. A ``ReadQuery`` is written in SQLAlchemy, against the models' tables,
and compiled once at import; each call binds its parameters by name and hands the SQL to
the request's asyncpg connection (the pool's, with its timeouts and health checks).

What stays as it was:

- **The workspace scope.** A statement that reads a table with a ``tenant_id`` column
  must compare it with ``bindparam("tenant_id")``: the construction refuses one that
  does not. The value is never the caller's: it is the tenant of the session's request,
  the same one ``bai_platform.db`` adds to every ORM statement.
- **Reads only.** It runs on read sessions (autocommit, one snapshot per statement);
  on a write session it raises, since the ORM's transaction may not have begun yet.
- **Failures.** A driver error is raised as SQLAlchemy's ``DBAPIError`` around it, so
  ``errors.database_trouble`` answers a lost or busy database with 503 as for any other
  statement, and a lost connection is invalidated: the pool replaces it.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import BindParameter, Select, Table
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import visitors

from bai_platform.db import REQUEST_STATE

TENANT = "tenant_id"
_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
_AUTOCOMMIT = "AUTOCOMMIT"

# The driver's errors that mean the connection itself is gone or unusable (the pool must
# replace it). InternalClientError: the server's goodbye (a shutdown) arrived while the
# connection sat in the pool, and the protocol is still consuming it when the next
# statement comes ("cannot switch to state ...; another operation is in progress").
_CONNECTION_LOST = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
)

Row = dict[str, Any]


class ReadQuery:
    """One SELECT, compiled for asyncpg once; ``all`` and ``first`` run it."""

    def __init__(self, statement: Select[Any]) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = compiled.string
        self._names: Sequence[str] = compiled.positiontup or ()
        binds = [compiled.binds[name] for name in self._names]
        self._fixed = {b.key: b.value for b in binds if b.value is not None}
        self._bind_processors = _bind_processors(binds)
        columns = statement.selected_columns
        self._columns = [(str(c.key), _result_processor(c.type)) for c in columns]
        self._scoped = TENANT in self._names
        unscoped = _tenant_tables(statement) if not self._scoped else []
        if unscoped:
            raise ValueError(
                f"a read of {', '.join(unscoped)} must compare tenant_id with "
                f"bindparam({TENANT!r}), so that it sees only the caller's workspace"
            )

    async def all(self, session: AsyncSession, **params: Any) -> list[Row]:
        """Every row, each a dict by the selected columns' names."""
        records = await self._fetch(session, params)
        return [self._row(record) for record in records]

    async def first(self, session: AsyncSession, **params: Any) -> Row | None:
        """The first row, or None."""
        records = await self._fetch(session, params)
        return self._row(records[0]) if records else None

    def _row(self, record: asyncpg.Record) -> Row:
        return {
            key: value if process is None or value is None else process(value)
            for (key, process), value in zip(self._columns, record.values(), strict=True)
        }

    async def _fetch(self, session: AsyncSession, params: dict[str, Any]) -> list[asyncpg.Record]:
        if TENANT in params:
            raise TypeError("tenant_id is the request's, never an argument")
        if self._scoped:
            params[TENANT] = _request_tenant(session)
        args = self._arguments(params)
        connection = await session.connection()
        if _isolation_level(connection) != _AUTOCOMMIT:
            raise RuntimeError("a ReadQuery runs on a read session (bai_platform.db.ReadSession)")
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        try:
            records: list[asyncpg.Record] = await driver.fetch(self.sql, *args)
        except Exception as exc:
            raise await _as_dbapi_error(connection, self.sql, args, exc) from exc
        return records

    def _arguments(self, params: Mapping[str, Any]) -> list[Any]:
        args = []
        for name in self._names:
            if name in params:
                value = params[name]
            elif name in self._fixed:
                value = self._fixed[name]
            else:
                raise TypeError(f"the query needs the parameter {name!r}")
            process = self._bind_processors.get(name)
            args.append(value if process is None or value is None else process(value))
        return args


def _isolation_level(connection: AsyncConnection) -> Any:
    sync = connection.sync_connection
    return sync.get_execution_options().get("isolation_level") if sync else None


def _request_tenant(session: AsyncSession) -> Any:
    tenant = getattr(session.info.get(REQUEST_STATE), TENANT, None)
    if tenant is None:
        raise RuntimeError("a workspace's read needs a session of a request with an identity")
    return tenant


def _tenant_tables(statement: Select[Any]) -> list[str]:
    tables = {e for e in visitors.iterate(statement) if isinstance(e, Table)}
    return sorted(t.fullname for t in tables if TENANT in t.c)


def _bind_processors(binds: Sequence[BindParameter[Any]]) -> dict[str, Callable[[Any], Any]]:
    found = {b.key: b.type.dialect_impl(_DIALECT).bind_processor(_DIALECT) for b in binds}
    return {key: process for key, process in found.items() if process is not None}


def _result_processor(type_: Any) -> Callable[[Any], Any] | None:
    process: Callable[[Any], Any] | None = type_.dialect_impl(_DIALECT).result_processor(
        _DIALECT, None
    )
    return process


async def _as_dbapi_error(
    connection: AsyncConnection, sql: str, args: Sequence[Any], exc: Exception
) -> DBAPIError:
    """The driver's error as SQLAlchemy would have raised it; a lost connection is
    invalidated, so the pool opens a new one instead of handing it out again."""
    lost = isinstance(exc, _CONNECTION_LOST) or str(getattr(exc, "sqlstate", "")).startswith("08")
    if lost:
        await connection.invalidate(exc)
    return DBAPIError(sql, tuple(args), exc, hide_parameters=True, connection_invalidated=lost)
