import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pwdlib import PasswordHash
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bai_platform.messaging import NatsLink
from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from gateway.api import router
from gateway.chat_api import router as chat_router
from gateway.edge_api import router as edge_router
from gateway.models import idempotency
from gateway.service.accounts import AuthContext
from gateway.service.callbacks import CallbackRouter
from gateway.service.forward_auth import ForwardAuth
from gateway.service.live import Hub, feed
from gateway.service.ratelimit import RateLimiter
from gateway.service.signing_keys import KeyRing, KeyStore, fernet_for
from gateway.service.visitors import WidgetDirectory
from gateway.settings import GatewaySettings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """What the gateway's api holds beyond the platform's: signing keys, the auth context,
    the rate limiter, ForwardAuth, the callback router, widgets and the live hub."""
    settings: GatewaySettings = app.state.settings
    fernet = fernet_for(settings.key_encryption_secret)
    keys = await KeyStore.open(
        db=app.state.db,
        fernet=fernet,
        unknown_kid_reload_seconds=settings.unknown_kid_reload_seconds,
        activation_seconds=settings.key_activation_seconds,
    )

    def trust_own_keys(ring: KeyRing) -> None:  # its own tokens: no HTTP to itself
        app.state.identity_verifier.use_keys(ring.jwks())

    keys.on_change(trust_own_keys)
    hasher = PasswordHash.recommended()
    app.state.auth = AuthContext(
        settings=settings,
        keys=keys,
        hasher=hasher,
        dummy_hash=hasher.hash("dummy password for timing"),
    )
    limiter = RateLimiter.from_settings(settings.rate_limits)
    app.state.rate_limiter = limiter
    app.state.forward_auth = ForwardAuth(
        settings=settings, keys=keys, db=app.state.db, limiter=limiter
    )
    link = NatsLink(settings.nats_url, name="gateway-api", auth=settings.nats_auth)
    app.state.callbacks = CallbackRouter(
        link=link,
        routes=settings.callback_routes,
        owner_deadline_seconds=settings.callback_owner_deadline_seconds,
    )
    app.state.widgets = WidgetDirectory(link=link)
    hub = Hub(
        retention_seconds=settings.live_retention_seconds,
        max_per_tenant=settings.live_max_connections_per_tenant,
    )
    app.state.live = hub
    app.state.on_draining.append(hub.shutdown)
    stop = asyncio.Event()
    background = [
        asyncio.create_task(keys.refresh_every(settings.key_reload_seconds, stop)),
        asyncio.create_task(link.run(stop)),
        asyncio.create_task(feed(hub, link, streams=settings.live_streams, stop=stop)),
    ]
    try:
        yield
    finally:
        hub.shutdown()
        stop.set()
        await asyncio.gather(*background)
        await limiter.close()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    resolved = settings if isinstance(settings, GatewaySettings) else GatewaySettings()

    app = create_service_app(
        resolved,
        title="B.A.I. gateway",
        routers=[router, chat_router, edge_router],
        lifespan=lifespan,
        idempotency=idempotency,
    )
    # Outermost: every per-IP limit (and log line) sees the client the trusted proxies
    # report, whatever server runs the app. Uvicorn is told the same list (bai_platform
    # .runtime); resolving twice gives the same client.
    trusted = [str(network) for network in resolved.trusted_proxies]
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)
    return app
