"""The FastAPI app every service builds: same errors, health, limits and telemetry.

Engines and clients are created in the lifespan and held, typed, in ``app.state``
(``bai_platform.app_state``): the platform's ``Platform``, then whatever the service's own
lifespan yields. Nothing is created at import time.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from math import ceil

import httpx
from fastapi import APIRouter, FastAPI
from sqlalchemy import Table
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bai_platform.app_state import Platform
from bai_platform.db import Database
from bai_platform.errors import install_error_handlers, problem_response
from bai_platform.health import health_router, until_ready
from bai_platform.idempotency import IdempotencyMiddleware
from bai_platform.identity import IdentityVerifier
from bai_platform.openapi import declare_answers
from bai_platform.settings import ServiceSettings
from bai_platform.telemetry import install_telemetry

# A service's own lifespan: given the platform's objects, it yields what the service holds
# beyond them (``app.state.service``, read with ``bai_platform.app_state.held``).
ServiceLifespan = Callable[[Platform], AbstractAsyncContextManager[object]]


class BodySizeLimit:
    """Refuses bodies above ``max_bytes`` with 413, whether declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and self._over(declared):
            await self._refuse(scope, receive, send)
            return
        await self._guarded(scope, receive, send)

    def _over(self, declared: bytes) -> bool:
        # bytes.isdigit() is ASCII-only; past 18 digits it is over any cap (and int() refuses
        # more than 4,300 digits, which would be a 500).
        return declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_bytes)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen, exceeded, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                exceeded = True  # the app sees a disconnect; the client gets our 413
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not exceeded:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            status=413, code="payload_too_large", detail=f"the body exceeds {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class RateLimitEcho:
    """Puts the RateLimit fields on every answer, errors included.

    Behind the edge, the gateway's ForwardAuth answer carries them and Traefik copies them
    onto the request (never from the client: the edge strips them first). A route that
    counts for itself (the gateway's public auth routes) leaves them in
    ``request.state.rate_limit_headers``.
    """

    FIELDS = (b"ratelimit", b"ratelimit-policy")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        forwarded = [(name, value) for name, value in scope["headers"] if name in self.FIELDS]

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = self._with_fields(message, forwarded, scope)
            await send(message)

        await self.app(scope, receive, send_with_fields)

    @staticmethod
    def _with_fields(
        message: Message, forwarded: list[tuple[bytes, bytes]], scope: Scope
    ) -> Message:
        own = scope.get("state", {}).get("rate_limit_headers", {})
        fields = [*forwarded, *((k.lower().encode(), v.encode()) for k, v in own.items())]
        present = {name.lower() for name, _ in message.get("headers", [])}
        extra = [(name, value) for name, value in fields if name not in present]
        if not extra:
            return message
        return {**message, "headers": [*message.get("headers", []), *extra]}


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    lifespan: ServiceLifespan | None = None,
    idempotency: Table | None = None,
    verify_identity: bool = True,
) -> FastAPI:
    """Build a service's app: routers, problem+json errors, health, metrics, traces."""

    @asynccontextmanager
    async def platform_lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        app.state.readiness_checks = {"database": until_ready(database.ping)}
        async with httpx.AsyncClient() as http:
            verifier = None
            if verify_identity:
                verifier = IdentityVerifier(
                    jwks_url=settings.identity_jwks_url,
                    issuer=settings.identity_issuer,
                    audience=settings.identity_audience,
                    http=http,
                )
            platform = Platform(
                settings=settings,
                db=database,
                http=http,
                identity_verifier=verifier,
                on_draining=app.state.on_draining,
            )
            app.state.platform, app.state.service = platform, None
            try:
                if lifespan is None:
                    yield
                else:
                    async with lifespan(platform) as held:
                        app.state.service = held
                        yield
            finally:
                await database.dispose()

    docs = settings.show_docs
    app = FastAPI(
        title=title,
        lifespan=platform_lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    # A client told to come back sooner than a pool wait would only queue again.
    install_error_handlers(app, busy_retry_after_seconds=ceil(settings.db_pool_timeout_seconds))
    # Called (no arguments) when the server starts draining; see runtime.DrainingServer.
    app.state.on_draining = []
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    declare_answers(app)
    if idempotency is not None:  # inside the body cap: it buffers the body it hashes
        app.add_middleware(IdempotencyMiddleware, table=idempotency)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitEcho)
    install_telemetry(app, settings)
    return app
