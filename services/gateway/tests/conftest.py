"""Gateway fixtures: one app on the session's migrated database, and accounts made through it."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import nats
import pytest
from fastapi import FastAPI
from nats.micro import add_service
from nats.micro.request import Request
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bai_contracts import WidgetFound
from bai_platform.app_state import held
from bai_platform.devstack import Stack
from bai_platform.identity import IDENTITY_HEADER
from bai_platform.settings import Environment
from bai_testing.plugin import app_client
from gateway.app import create_app
from gateway.service.ratelimit import Quota, RateLimitSettings
from gateway.service.signing_keys import KeyRing
from gateway.settings import GatewaySettings
from gateway.state import GatewayState

PASSWORD = "correct horse battery staple"
PROBLEM_JSON = "application/problem+json"
SHOP = "https://shop.example"


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    workspace: str
    access_token: str
    refresh_token: str
    tenant_id: str
    user_id: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(local: str = "owner") -> str:
    return f"{local}-{uuid4().hex[:12]}@example.com"


def unique_workspace() -> str:
    return f"Workspace {uuid4().hex[:12]}"


async def sign_up(
    client: httpx.AsyncClient, *, email: str | None = None, workspace: str | None = None
) -> Account:
    email = email or unique_email()
    workspace = workspace or unique_workspace()
    response = await client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "workspace": workspace}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        email=email,
        password=PASSWORD,
        workspace=workspace,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        tenant_id=body["tenant_id"],
        user_id=body["user_id"],
    )


async def forward_auth(
    client: httpx.AsyncClient, bearer: str, uri: str = "/v1/auth/me", method: str = "GET"
) -> httpx.Response:
    """What Traefik asks the gateway before forwarding ``method uri`` with this bearer."""
    return await client.get(
        "/auth/verify",
        headers={
            "Authorization": f"Bearer {bearer}",
            "X-Forwarded-Uri": uri,
            "X-Forwarded-Method": method,
        },
    )


async def identity_headers(client: httpx.AsyncClient, bearer: str) -> dict[str, str]:
    """The headers a request carries once Traefik has asked the gateway who this is."""
    response = await forward_auth(client, bearer)
    assert response.status_code == 200, response.text
    return {IDENTITY_HEADER: response.headers[IDENTITY_HEADER]}


def assert_problem(response: httpx.Response, *, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hs256_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT signed with HMAC-SHA256 by hand, so no library guard stops odd secrets."""
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True)
class TokenForge:
    """Signs access tokens with the gateway's own current key, one detail changed at a time."""

    ring: KeyRing
    settings: GatewaySettings
    owner: Account  # a real member, so only the forged detail can make a token fail

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Valid access claims; a change to ``None`` removes the claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.token_issuer,
            "aud": self.settings.token_audience,
            "sub": self.owner.user_id,
            "tid": self.owner.tenant_id,
            "roles": ["owner"],
            "scope": "api",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid4().hex,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"kid": self.ring.current.kid, "typ": "at+jwt"}
        header.update(changes)
        return {name: value for name, value in header.items() if value is not None}

    def sign(
        self, claims: dict[str, Any] | None = None, header: dict[str, Any] | None = None
    ) -> str:
        return jwt.encode(
            self.claims() if claims is None else claims,
            self.ring.current.private_key,
            algorithm="EdDSA",
            headers=self.header() if header is None else header,
        )


@dataclass
class Creator:
    """Creator's side of the widget lookup: which keys exist, for whom and where."""

    widgets: dict[str, WidgetFound] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def widget(
        self, *, tenant: str | None = None, origins: list[str] | None = None, active: bool = True
    ) -> tuple[str, WidgetFound]:
        key = f"wk_{uuid4().hex}"
        self.widgets[key] = WidgetFound(
            found=True,
            active=active,
            tenant_id=UUID(tenant) if tenant else uuid4(),
            widget_id=uuid4(),
            allowed_origins=origins if origins is not None else [SHOP],
        )
        return key, self.widgets[key]

    async def answer(self, request: Request) -> None:
        key = json.loads(request.data)["public_key"]
        self.asked.append(key)
        answer = self.widgets.get(key, WidgetFound(found=False))
        await request.respond(answer.model_dump_json().encode())


@asynccontextmanager
async def serve_widgets(
    nats_url: str, subject: str, name: str = "widgettest-widgets"
) -> AsyncIterator[Creator]:
    """A stand-in for creator's widget lookup, a NATS micro service on ``subject``."""
    nc = await nats.connect(nats_url)
    creator = Creator()
    service = await add_service(nc, name=name, version="0.1.0")
    await service.add_endpoint(name="widget_lookup", handler=creator.answer, subject=subject)
    await nc.flush()  # the server knows the responder before any request is sent
    try:
        yield creator
    finally:
        await service.stop()
        await nc.close()


@pytest.fixture(scope="session")
def settings(migrated: Stack) -> GatewaySettings:
    return GatewaySettings(
        database_url=SecretStr(migrated.database_url("gateway")),
        nats_url=migrated.nats_url,
        environment=Environment.TEST,
        # Every test client is 127.0.0.1: per-IP quotas are tested with their own settings.
        rate_limits=RateLimitSettings(
            ip_auth=Quota(limit=1_000_000), visitor_token_ip=Quota(limit=1_000_000)
        ),
        # A prefix of a test-only owner, so that callback tests never meet a real service.
        callback_routes={"gen": "creator", "ext": "mining", "pub": "planner", "tst": "n8ntest"},
        # An owner nobody answers for is given up on sooner than in production.
        callback_owner_deadline_seconds=1.5,
    )


@pytest.fixture(scope="session")
def app(settings: GatewaySettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


@pytest.fixture(scope="session")
async def jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    keys: dict[str, Any] = response.json()
    return keys


@pytest.fixture(scope="session")
async def forge(app: FastAPI, client: httpx.AsyncClient, settings: GatewaySettings) -> TokenForge:
    # ``client`` runs the lifespan, which loads the key ring.
    ring: KeyRing = held(app, GatewayState).auth.ring
    return TokenForge(ring=ring, settings=settings, owner=await sign_up(client))


@pytest.fixture(scope="session")
async def db(settings: GatewaySettings) -> AsyncIterator[AsyncEngine]:
    """A separate engine on the gateway's own role, to look at what requests stored."""
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    return await sign_up(client)
