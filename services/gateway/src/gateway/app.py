from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pwdlib import PasswordHash

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from gateway.api import router
from gateway.forward_auth import ForwardAuth
from gateway.keys import fernet_for, load_keyring
from gateway.service import AuthContext
from gateway.settings import GatewaySettings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    resolved = settings if isinstance(settings, GatewaySettings) else GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with app.state.db.transaction() as session:
            ring = await load_keyring(session, fernet=fernet_for(resolved.key_encryption_secret))
        hasher = PasswordHash.recommended()
        app.state.auth = AuthContext(
            settings=resolved,
            ring=ring,
            hasher=hasher,
            dummy_hash=hasher.hash("dummy password for timing"),
        )
        app.state.forward_auth = ForwardAuth(settings=resolved, ring=ring, db=app.state.db)
        app.state.identity_verifier.use_keys(ring.jwks())  # its own keys: no HTTP to itself
        yield

    return create_service_app(resolved, title="B.A.I. gateway", routers=[router], lifespan=lifespan)
