"""What the gateway's api holds while it runs, made by its lifespan: signing keys, the auth
context, the rate limiter, ForwardAuth, the callback router, widgets and the live hub.

Routes take it as ``State`` (or one of its parts through ``gateway.deps``).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from pwdlib import PasswordHash

from bai_platform.app_state import Platform, held
from bai_platform.messaging import NatsLink
from gateway.service.accounts import AuthContext
from gateway.service.callbacks import CallbackRouter
from gateway.service.forward_auth import ForwardAuth
from gateway.service.live import Hub, feed
from gateway.service.ratelimit import RateLimiter
from gateway.service.signing_keys import KeyRing, KeyStore, fernet_for
from gateway.service.visitors import WidgetDirectory
from gateway.settings import GatewaySettings


@dataclass(eq=False)
class GatewayState:
    """What the gateway's api holds beyond the platform's (``held(request, GatewayState)``)."""

    settings: GatewaySettings
    auth: AuthContext
    rate_limiter: RateLimiter
    forward_auth: ForwardAuth
    callbacks: CallbackRouter
    widgets: WidgetDirectory
    live: Hub


@asynccontextmanager
async def lifespan(platform: Platform) -> AsyncIterator[GatewayState]:
    """Signing keys, the auth context, the rate limiter, ForwardAuth, the callback router,
    widgets and the live hub, with their background tasks."""
    settings = platform.settings
    assert isinstance(settings, GatewaySettings)
    verifier = platform.identity_verifier
    assert verifier is not None
    fernet = fernet_for(settings.key_encryption_secret)
    keys = await KeyStore.open(
        db=platform.db,
        fernet=fernet,
        unknown_kid_reload_seconds=settings.unknown_kid_reload_seconds,
        activation_seconds=settings.key_activation_seconds,
    )

    def trust_own_keys(ring: KeyRing) -> None:  # its own tokens: no HTTP to itself
        verifier.use_keys(ring.jwks())

    keys.on_change(trust_own_keys)
    hasher = PasswordHash.recommended()
    limiter = RateLimiter.from_settings(settings.rate_limits)
    link = NatsLink(settings.nats_url, name="gateway-api", auth=settings.nats_auth)
    hub = Hub(
        retention_seconds=settings.live_retention_seconds,
        max_per_tenant=settings.live_max_connections_per_tenant,
    )
    platform.on_draining.append(hub.shutdown)
    state = GatewayState(
        settings=settings,
        auth=AuthContext(
            settings=settings,
            keys=keys,
            hasher=hasher,
            dummy_hash=hasher.hash("dummy password for timing"),
        ),
        rate_limiter=limiter,
        forward_auth=ForwardAuth(settings=settings, keys=keys, db=platform.db, limiter=limiter),
        callbacks=CallbackRouter(
            link=link,
            routes=settings.callback_routes,
            owner_deadline_seconds=settings.callback_owner_deadline_seconds,
        ),
        widgets=WidgetDirectory(link=link),
        live=hub,
    )
    stop = asyncio.Event()
    background = [
        asyncio.create_task(keys.refresh_every(settings.key_reload_seconds, stop)),
        asyncio.create_task(link.run(stop)),
        asyncio.create_task(feed(hub, link, streams=settings.live_streams, stop=stop)),
    ]
    try:
        yield state
    finally:
        hub.shutdown()
        stop.set()
        await asyncio.gather(*background)
        await limiter.close()


async def _state(request: Request) -> GatewayState:
    return held(request, GatewayState)


State = Annotated[GatewayState, Depends(_state)]
