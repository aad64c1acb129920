"""Errors as RFC 9457 problem details, the same shape from every service.

    ServiceError                      500 internal_error
    ├── BadRequest                    400 bad_request
    ├── Unauthorized                  401 unauthorized
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not_found
    ├── Conflict                      409 conflict
    ├── PayloadTooLarge               413 payload_too_large
    ├── Unprocessable                 422 unprocessable
    ├── TooManyRequests               429 rate_limited
    └── ServiceUnavailable            503 unavailable
        ├── DatabaseBusy              503 database_busy (with Retry-After)
        └── DatabaseUnavailable       503 database_unavailable (with Retry-After)

Domain code raises these (or subclasses with a sharper ``code``); ``install_error_handlers``
renders them, request validation errors, HTTP exceptions and anything unexpected (a 500
without a stack trace) as ``application/problem+json``.

A request that waited ``db_pool_timeout_seconds`` for a pooled connection in vain, or whose
new connection PostgreSQL refused for want of slots (``too_many_connections``, or
``cannot_connect_now`` while it starts or stops), is ``DatabaseBusy``: the service is
overloaded for a moment, not broken, and the client is told when to come back. A database
that is not there for a moment (restarting: nothing listens, it is shutting down or starting
up, or it dropped the connection mid-query) is ``DatabaseUnavailable``, also 503 with
Retry-After: the transaction was rolled back, so the request may simply be sent again. That
holds wherever it happens: in a route, in a dependency or in a middleware (the idempotency
claim), because the last-resort handler recognises it too. A statement that ran out of
``db_statement_timeout_ms`` (waiting on a lock, mostly) and a transaction PostgreSQL chose to
end for a deadlock or a serialization conflict are ``DatabaseBusy`` as well: rolled back,
nothing changed, and the same request succeeds once the contention has passed.
"""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://bai.dev/problems/"
# SQLSTATEs of a PostgreSQL that refuses a new connection for now: too_many_connections
# (max_connections or a role's CONNECTION LIMIT reached) and cannot_connect_now.
BUSY_SQLSTATES = frozenset({"53300", "57P03"})
# The server ended the session: an administrator or a shutdown (57P01), a crash (57P02).
GONE_SQLSTATES = frozenset({"57P01", "57P02"})
# Class 08, connection_exception: the connection failed or was lost (08003, 08006, ...).
CONNECTION_SQLSTATE_CLASS = "08"
# The statement ran out of time (query_canceled: statement_timeout), or PostgreSQL ended the
# transaction to let others through: deadlock_detected, serialization_failure,
# lock_not_available.
CONTENTION_SQLSTATES = frozenset({"57014", "40P01", "40001", "55P03"})


class ServiceError(Exception):
    """A failure the caller can act on, rendered as problem+json."""

    status_code: int = 500
    code: str = "internal_error"
    # True for refusals whose writes must stand (e.g. revoking a reused token's family):
    # the request session then commits before the error is answered.
    keeps_effects: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or HTTPStatus(self.status_code).phrase)
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(ServiceError):
    status_code, code = 403, "forbidden"


class NotFound(ServiceError):
    status_code, code = 404, "not_found"


class Conflict(ServiceError):
    status_code, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "payload_too_large"


class Unprocessable(ServiceError):
    status_code, code = 422, "unprocessable"


class FieldInvalid(Unprocessable):
    """A 422 naming the body field at fault, shaped like a validation error: for checks
    a schema cannot make (they need the database or the network)."""

    code = "validation_failed"

    def __init__(self, field: str, message: str) -> None:
        error = {"loc": ["body", field], "msg": message, "type": "value_error"}
        super().__init__(f"{field}: {message}", extra={"errors": [error]})


class TooManyRequests(ServiceError):
    status_code, code = 429, "rate_limited"


class ServiceUnavailable(ServiceError):
    status_code, code = 503, "unavailable"


class DatabaseBusy(ServiceUnavailable):
    code = "database_busy"


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


_CODES_BY_STATUS = {
    cls.status_code: cls.code
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        Unprocessable,
        TooManyRequests,
        ServiceUnavailable,
    )
}


def problem_response(
    *,
    status: int,
    code: str,
    detail: str | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build one problem+json answer."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def code_for_status(status: int) -> str:
    return _CODES_BY_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem_response(
        status=exc.status_code,
        code=exc.code,
        detail=exc.detail,
        instance=request.url.path,
        extra=exc.extra,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Input values are left out on purpose: they may hold passwords or tokens.
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return problem_response(
        status=422,
        code="validation_failed",
        instance=request.url.path,
        detail="The request body or parameters are not valid.",
        extra={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(
        status=exc.status_code,
        code=code_for_status(exc.status_code),
        detail=detail,
        instance=request.url.path,
        headers=exc.headers,
    )


def database_trouble(exc: BaseException) -> str | None:
    """Why the database cannot serve this request for a moment, or None for any other
    failure: ``pool_timeout``, ``no_slots`` (PostgreSQL refused a new connection),
    ``contention`` (a statement timeout, a deadlock or a serialization conflict) or
    ``unreachable`` (nothing listens, or the server ended the connection)."""
    if isinstance(exc, PoolTimeout):
        return "pool_timeout"
    if isinstance(exc, ConnectionError):  # asyncpg's connect, unwrapped by SQLAlchemy
        return "unreachable"
    if not isinstance(exc, DBAPIError):
        return None
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    if sqlstate in BUSY_SQLSTATES:
        return "no_slots"
    if sqlstate in CONTENTION_SQLSTATES:
        return "contention"
    # connection_invalidated: SQLAlchemy's dialect recognised a lost connection. It does not
    # while a new connection is being opened (the server closed it during the handshake).
    if (
        exc.connection_invalidated
        or sqlstate in GONE_SQLSTATES
        or sqlstate.startswith(CONNECTION_SQLSTATE_CLASS)
    ):
        return "unreachable"
    return None


async def unexpected_error_response(request: Request, exc: Exception) -> JSONResponse:
    """The last resort: a database away for a moment is still a 503, anything else a
    logged 500 without internals."""
    if database_trouble(exc):  # raised outside the routes (a middleware): still a 503
        return await database_busy_response(request, exc)
    structlog.get_logger("bai.errors").exception("unhandled_error", path=request.url.path)
    return problem_response(
        status=500,
        code="internal_error",
        instance=request.url.path,
        detail="Something went wrong on our side; it has been logged.",
    )


async def database_busy_response(request: Request, exc: Exception) -> JSONResponse:
    """503 database_busy or database_unavailable, with the Retry-After that
    ``install_error_handlers`` was given."""
    reason = database_trouble(exc) or "pool_timeout"
    structlog.get_logger("bai.errors").warning(
        "database_busy", path=request.url.path, reason=reason
    )
    headers = {"Retry-After": str(getattr(request.app.state, "busy_retry_after_seconds", 1))}
    refusal: ServiceError
    if reason == "unreachable":
        refusal = DatabaseUnavailable(
            "the database is not reachable for a moment; nothing was changed, try again shortly",
            headers=headers,
        )
    elif reason == "contention":
        refusal = DatabaseBusy(
            "the database gave up on this request while others held what it needed; nothing"
            " was changed, try again shortly",
            headers=headers,
        )
    else:
        refusal = DatabaseBusy(
            "every database connection is in use; try again shortly", headers=headers
        )
    return await _service_error(request, refusal)


async def _driver_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_trouble(exc):
        raise exc  # any other driver error goes on to the last-resort 500, as before
    return await database_busy_response(request, exc)


def install_error_handlers(app: FastAPI, *, busy_retry_after_seconds: int = 2) -> None:
    """Render every failure as problem+json."""
    app.state.busy_retry_after_seconds = max(1, busy_retry_after_seconds)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(PoolTimeout, database_busy_response)
    app.add_exception_handler(DBAPIError, _driver_error)
    app.add_exception_handler(ConnectionError, _driver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected_error_response)
