"""``X-BAI-Identity``: the short-lived token the gateway mints and every service trusts.

The gateway answers Traefik's ForwardAuth call with this header; Traefik copies it onto
the forwarded request, overwriting anything the client sent. Services verify it against
the gateway's JWKS (EdDSA only, pinned ``typ``, ``iss``, ``aud``, small leeway) and a
request without a valid one is 401. An unknown ``kid`` triggers at most one JWKS refresh
per ``refresh_interval`` (a few seconds: a rotated key is in the JWKS well before the
gateway signs with it, so one refresh finds it).

Each service verifies only its own audience (``bai-<service>``, see ``bai_platform.access``)
and, on every route that takes ``CurrentIdentity``, applies the shared access rule to the
identity: credential type, scopes, visitor paths and a workspace role.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID, uuid4

import httpx
import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request

from bai_platform import access
from bai_platform.app_state import platform_of
from bai_platform.errors import Forbidden, Unauthorized

IDENTITY_HEADER = "X-BAI-Identity"
IDENTITY_TYP = "bai-identity+jwt"
IDENTITY_TTL_SECONDS = 60
ALGORITHMS = ["EdDSA"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, for which tenant, with what rights."""

    subject: str
    tenant_id: UUID
    roles: frozenset[str]
    scopes: frozenset[str]
    credential: str

    def require_role(self, *allowed: str) -> None:
        if not self.roles.intersection(allowed):
            raise Forbidden(f"this action needs one of the roles: {', '.join(allowed)}")


def mint_identity(
    *,
    key: Ed25519PrivateKey,
    kid: str,
    issuer: str,
    audience: str,
    subject: str,
    tenant_id: UUID | str,
    roles: list[str],
    scopes: list[str],
    credential: str,
    ttl_seconds: int = IDENTITY_TTL_SECONDS,
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "tid": str(tenant_id),
        "roles": roles,
        "scope": " ".join(scopes),
        "cred": credential,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": IDENTITY_TYP})


class IdentityVerifier:
    """Verifies identity tokens with keys from the gateway's JWKS."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        http: httpx.AsyncClient,
        leeway_seconds: int = 5,
        refresh_interval: float = 2.0,
        cache_size: int = 10_000,
    ) -> None:
        self._jwks_url, self._issuer, self._audience = jwks_url, issuer, audience
        self._http = http
        self._leeway = leeway_seconds
        self._refresh_interval = refresh_interval
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._refresh_lock = asyncio.Lock()
        # The gateway hands the same identity token to every request of a credential for
        # tens of seconds: verify its signature once, then answer from memory until exp.
        self._verified: TTLCache[str, tuple[Identity, float]] = TTLCache(
            maxsize=cache_size, ttl=IDENTITY_TTL_SECONDS
        )

    def use_keys(self, jwks: dict[str, Any]) -> None:
        """Trust these keys without fetching (the gateway verifying its own tokens)."""
        keyset = jwt.PyJWKSet.from_dict(jwks)
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}

    async def verify(self, token: str) -> Identity:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        identity, expires_at = await self._verify_signed(token)
        self._verified[token] = (identity, expires_at)
        return identity

    async def _verify_signed(self, token: str) -> tuple[Identity, float]:
        key = await self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "tid", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"identity token rejected: {exc}") from exc
        return _identity_from(claims), float(claims["exp"])

    async def _key_for(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("identity token is malformed") from exc
        # typ is a media type: compared without regard to case (RFC 7515 section 4.1.9).
        typ = str(header.get("typ", "")).lower()
        if header.get("alg") not in ALGORITHMS or typ != IDENTITY_TYP:
            raise Unauthorized("identity token has the wrong algorithm or type")
        kid = str(header.get("kid", ""))
        if kid not in self._keys:
            await self._refresh(kid)
        if kid not in self._keys:
            raise Unauthorized("identity token is signed by an unknown key")
        return self._keys[kid]

    async def _refresh(self, kid: str) -> None:
        # One fetch at a time, and the requests that arrive meanwhile wait for it: without the
        # lock they found the interval running and the key not there yet, and a new process's
        # first burst of requests was a burst of 401s.
        async with self._refresh_lock:
            if kid in self._keys:  # fetched while this request waited
                return
            if time.monotonic() - self._fetched_at < self._refresh_interval:
                return
            await self._fetch()

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            response = await self._http.get(self._jwks_url, timeout=5.0)
            response.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, jwt.PyJWKSetError, ValueError):
            self._fetched_at = float("-inf")  # let the next request try again
            return
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}


def _identity_from(claims: dict[str, Any]) -> Identity:
    try:
        tenant_id = UUID(str(claims["tid"]))
    except ValueError as exc:
        raise Unauthorized("identity token names no valid tenant") from exc
    return Identity(
        subject=str(claims["sub"]),
        tenant_id=tenant_id,
        roles=frozenset(claims.get("roles") or ()),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        credential=str(claims.get("cred", "user")),
    )


async def require_identity(request: Request) -> Identity:
    """The verified caller, once the access rule lets it call this method and path."""
    token = request.headers.get(IDENTITY_HEADER)
    if not token:
        raise Unauthorized("this service is reached only through the gateway")
    verifier = platform_of(request).identity_verifier
    if verifier is None:
        raise RuntimeError("this app does not verify identities")
    identity = await verifier.verify(token)
    # The path as routed (decoded), so an encoded dot segment cannot pass as a chat path.
    access.check(
        credential=identity.credential,
        roles=identity.roles,
        scopes=identity.scopes,
        method=request.method,
        path=request.scope["path"],
    )
    # From here on the request's sessions see only this workspace (bai_platform.db).
    request.state.tenant_id = identity.tenant_id
    return identity


CurrentIdentity = Annotated[Identity, Depends(require_identity)]


class RequireRole:
    """A route's role requirement, declared on the route as its identity's type.

    ``identity: Editor`` lets owners, admins and editors through and refuses everyone
    else with 403, after the access rule (``require_identity``) and before the route runs.
    ``people_only`` also refuses API keys (which carry a role of their own) with that
    message: some things only people manage. Every route's requirement is read back from
    its dependencies by ``tests/test_every_route_checks_access.py``.
    """

    def __init__(self, *roles: str, people_only: str | None = None) -> None:
        self.roles = roles
        self.people_only = people_only

    async def __call__(self, identity: CurrentIdentity) -> Identity:
        if self.people_only and identity.credential != access.USER_CREDENTIAL:
            raise Forbidden(self.people_only)
        identity.require_role(*self.roles)
        return identity

    def __repr__(self) -> str:
        people = ", people only" if self.people_only else ""
        return f"RequireRole({', '.join(self.roles)}{people})"


Editor = Annotated[Identity, Depends(RequireRole(*access.EDITORS))]
Admin = Annotated[Identity, Depends(RequireRole(*access.ADMINS))]
