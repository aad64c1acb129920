"""Every route of every service applies the access rule itself, whoever reached it.

The routes are read from each service's app, so a route added tomorrow is walked too:
an identity the gateway would have refused (a website visitor's outside the chat, an API
key's without the route's scope, a viewer's writing) is refused by the service directly.
Routes without an identity are listed: each is public on purpose. What a route asks for
beyond the rule is declared on the route (``identity: Editor``, ``Admin``, the gateway's
``Manager``), read back from its dependencies and held to the table below.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

import billing.app
import creator.app
import gateway.app
import mining.app
import planner.app
from bai_contracts import visitor_subject
from bai_platform.access import (
    ADMINS,
    EDITORS,
    KEY_SCOPES,
    READ_METHODS,
    VISITOR_METHODS,
    is_chat_path,
    required_scope,
)
from bai_platform.devstack import Stack
from bai_platform.identity import IDENTITY_HEADER, RequireRole, mint_identity, require_identity
from bai_platform.settings import ServiceSettings
from bai_testing.plugin import TEST_KID, settings_for, trusting_client
from billing.settings import BillingSettings
from creator.settings import CreatorSettings
from gateway.settings import GatewaySettings
from mining.settings import MiningSettings
from planner.settings import PlannerSettings

AppFactory = Callable[[Any], FastAPI]
SERVICES: dict[str, tuple[type[ServiceSettings], AppFactory]] = {
    "planner": (PlannerSettings, planner.app.create_app),
    "creator": (CreatorSettings, creator.app.create_app),
    "mining": (MiningSettings, mining.app.create_app),
    "billing": (BillingSettings, billing.app.create_app),
}
# Reached without an identity on purpose: health and metrics (never routed by the edge),
# the API docs, a review link (the signed link is the credential), Stripe's webhook (signed).
INFRASTRUCTURE = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
PUBLIC = {
    "planner": {"/v1/planner/review/{token}", "/v1/planner/review/{token}/posts/{post_id}"},
    "creator": set(),
    "mining": set(),
    "billing": {"/v1/billing/webhooks/stripe"},
}
# The routes only admins (owner, admin) may call: the workspace's connections to the
# outside, its money and its people. Every other write asks for an editor, but the chat's
# (a website visitor's) and the public ones.
ADMIN_ROUTES = {
    ("planner", "PUT", "/v1/planner/publishing-target"),
    ("planner", "DELETE", "/v1/planner/publishing-target"),
    ("creator", "PUT", "/v1/creator/engine"),
    ("mining", "PUT", "/v1/mining/workflow"),
    ("mining", "DELETE", "/v1/mining/workflow"),
    ("billing", "POST", "/v1/billing/checkout"),
    ("billing", "POST", "/v1/billing/portal"),
    ("billing", "POST", "/v1/billing/subscription/cancel"),
}
# The gateway's: people (not API keys) who are admins manage keys, members and invitations.
GATEWAY_MANAGER_ROUTES = {
    (method, path)
    for path, methods in {
        "/v1/auth/api-keys": ("GET", "POST"),
        "/v1/auth/api-keys/{key_id}": ("DELETE",),
        "/v1/auth/members/{user_id}": ("PATCH", "DELETE"),
        "/v1/auth/invitations": ("GET", "POST"),
        "/v1/auth/invitations/{invitation_id}": ("DELETE",),
    }.items()
    for method in methods
}
# What the access rule answers; a route's own refusals (a role it asks for) are not these.
RULE_CODES = {
    "insufficient_scope",
    "visitor_not_allowed_here",
    "unknown_credential",
    "no_workspace_role",
}


def _takes_identity(dependant: Dependant | None) -> bool:
    return dependant is not None and any(
        sub.call is require_identity or _takes_identity(sub) for sub in dependant.dependencies
    )


def _declared(dependant: Dependant | None) -> RequireRole | None:
    """The role requirement a route declares (its identity's type), if any."""
    for sub in dependant.dependencies if dependant else ():
        if isinstance(sub.call, RequireRole):
            return sub.call
        if (found := _declared(sub)) is not None:
            return found
    return None


def _requirements(apps: dict[str, FastAPI]) -> dict[tuple[str, str, str], RequireRole | None]:
    return {
        (service, method, route.path): _declared(getattr(route, "dependant", None))
        for service, app in apps.items()
        for route in iter_route_contexts(app.routes)
        if route.path is not None
        for method in route.methods or ()
    }


def _routes_of(service: str) -> Iterator[tuple[str, bool, set[str]]]:
    settings_class, create_app = SERVICES[service]
    for route in iter_route_contexts(create_app(settings_class()).routes):
        if route.path is not None and not route.path.startswith("/docs/"):
            dependant = getattr(route, "dependant", None)
            yield route.path, _takes_identity(dependant), set(route.methods or ())


def _walk(keep: Callable[[str, str], bool] = lambda method, path: True) -> list[Any]:
    return [
        pytest.param(service, method, path, id=f"{service} {method} {path}")
        for service in SERVICES
        for path, guarded, methods in _routes_of(service)
        for method in sorted(methods)
        if guarded and keep(method, path)
    ]


def _visitor_may(method: str, path: str) -> bool:
    return is_chat_path(_concrete(path)) and method in VISITOR_METHODS


def _concrete(path: str) -> str:
    """The route's path with every parameter filled (the rule runs before they are parsed)."""
    parts = path.split("/")
    return "/".join(str(uuid4()) if part.startswith("{") else part for part in parts)


@pytest.fixture(scope="module")
async def services(
    migrated: Stack, signing_key: Ed25519PrivateKey
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Each service's app, called directly: no gateway in front of any of them."""
    async with AsyncExitStack() as stack:
        clients = {}
        for service, (settings_class, create_app) in SERVICES.items():
            app = create_app(settings_for(settings_class, migrated, service))
            clients[service] = await stack.enter_async_context(trusting_client(app, signing_key))
        yield clients


def _identity(
    key: Ed25519PrivateKey,
    service: str,
    tenant: UUID,
    *,
    credential: str,
    roles: list[str],
    scopes: list[str],
    subject: str = "user-1",
) -> dict[str, str]:
    token = mint_identity(
        key=key,
        kid=TEST_KID,
        issuer="bai-gateway",
        audience=f"bai-{service}",
        subject=subject,
        tenant_id=tenant,
        roles=roles,
        scopes=scopes,
        credential=credential,
    )
    return {IDENTITY_HEADER: token}


def _visitor(key: Ed25519PrivateKey, service: str, tenant: UUID) -> dict[str, str]:
    subject = visitor_subject(uuid4(), "vis_0123456789abcdef")
    return _identity(
        key,
        service,
        tenant,
        credential="visitor",
        roles=["visitor"],
        scopes=["chat"],
        subject=subject,
    )


def _code(response: httpx.Response) -> str | None:
    if response.headers.get("content-type") != "application/problem+json":
        return None
    code: str | None = response.json().get("code")
    return code


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_route_without_an_identity_is_public_on_purpose(service: str) -> None:
    unguarded = {path for path, guarded, _ in _routes_of(service) if not guarded}

    assert unguarded - INFRASTRUCTURE == PUBLIC[service]


def test_every_route_declares_the_roles_it_needs_beyond_the_rule() -> None:
    apps = {service: create_app(settings()) for service, (settings, create_app) in SERVICES.items()}
    declared = _requirements(apps)
    admins = {route for route, needs in declared.items() if needs and needs.roles == ADMINS}
    writes = {
        route
        for route, needs in declared.items()
        if route[1] not in READ_METHODS
        and not is_chat_path(_concrete(route[2]))
        and route[2] not in PUBLIC[route[0]]
    }
    undeclared = {route for route in writes if declared[route] is None}
    others = [needs for needs in declared.values() if needs and needs.roles != ADMINS]

    assert admins == ADMIN_ROUTES
    assert not undeclared, "writes that declare no role"
    assert all(needs.roles == EDITORS for needs in others)
    assert not any(needs.people_only for needs in declared.values() if needs)


def test_the_gateway_lets_only_people_who_are_admins_manage_keys_members_and_invitations() -> None:
    declared = _requirements({"gateway": gateway.app.create_app(GatewaySettings())})
    managers = {
        (method, path): needs for (_, method, path), needs in declared.items() if needs is not None
    }

    assert set(managers) == GATEWAY_MANAGER_ROUTES
    assert all(needs.roles == ADMINS and needs.people_only for needs in managers.values())


@pytest.mark.parametrize(("service", "method", "path"), _walk())
async def test_an_owner_passes_the_access_rule_on_every_route(
    services: dict[str, httpx.AsyncClient],
    signing_key: Ed25519PrivateKey,
    tenant: UUID,
    service: str,
    method: str,
    path: str,
) -> None:
    headers = _identity(
        signing_key, service, tenant, credential="user", roles=["owner"], scopes=["api"]
    )

    response = await services[service].request(method, _concrete(path), headers=headers)

    assert response.status_code != 401, response.text
    assert _code(response) not in RULE_CODES, response.text


@pytest.mark.parametrize(
    ("service", "method", "path"), _walk(lambda method, path: not _visitor_may(method, path))
)
async def test_a_visitor_identity_is_refused_on_every_route_but_the_chat(
    services: dict[str, httpx.AsyncClient],
    signing_key: Ed25519PrivateKey,
    tenant: UUID,
    service: str,
    method: str,
    path: str,
) -> None:
    headers = _visitor(signing_key, service, tenant)

    response = await services[service].request(method, _concrete(path), headers=headers)

    assert response.status_code == 403, response.text
    assert _code(response) == "visitor_not_allowed_here"


@pytest.mark.parametrize(("service", "method", "path"), _walk())
async def test_a_key_identity_without_the_routes_scope_is_refused_on_every_route(
    services: dict[str, httpx.AsyncClient],
    signing_key: Ed25519PrivateKey,
    tenant: UUID,
    service: str,
    method: str,
    path: str,
) -> None:
    # Every scope a key can hold but the one this route needs.
    others = sorted(KEY_SCOPES - {required_scope(method, path)})
    headers = _identity(
        signing_key, service, tenant, credential="api_key", roles=["editor"], scopes=others
    )

    response = await services[service].request(method, _concrete(path), headers=headers)

    assert response.status_code == 403, response.text
    assert _code(response) == "insufficient_scope"


def _refusals() -> list[Any]:
    """A viewer on every route that writes, an editor on every route for admins."""
    writes = _walk(lambda method, path: method not in {"GET", "HEAD"})
    viewer = [pytest.param("viewer", *case.values, id=f"viewer {case.id}") for case in writes]
    editor = [
        pytest.param("editor", *route, id=f"editor {' '.join(route)}")
        for route in sorted(ADMIN_ROUTES)
    ]
    return viewer + editor


@pytest.mark.parametrize(("role", "service", "method", "path"), _refusals())
async def test_a_role_the_route_does_not_let_in_is_refused(
    services: dict[str, httpx.AsyncClient],
    signing_key: Ed25519PrivateKey,
    tenant: UUID,
    role: str,
    service: str,
    method: str,
    path: str,
) -> None:
    headers = _identity(
        signing_key, service, tenant, credential="user", roles=[role], scopes=["api"]
    )

    response = await services[service].request(method, _concrete(path), headers=headers)

    assert response.status_code == 403, response.text
    assert _code(response) == "forbidden"
    if role == "editor":
        assert "owner, admin" in response.json()["detail"]
