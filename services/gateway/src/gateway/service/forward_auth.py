"""The ForwardAuth decision Traefik asks for on every protected request.

Input: the caller's ``Authorization: Bearer`` (an access token, an API key or a website
chat visitor token; never a token from the query string), the forwarded method and path,
and the browser's ``Origin``. Output: 200 with ``X-BAI-Identity`` or a problem+json 401 /
403.

A visitor token (JOSE ``typ`` ``bai-visitor+jwt``, see ``gateway.service.visitors``) is accepted
only under ``CHAT_PATH_PREFIX`` with GET, HEAD or POST, and only from the origin it was
minted for when the request names one; the service sees ``visitor:<widget>:<visitor>``
with the role ``visitor`` and the scope ``chat``. The type is pinned both ways: access
tokens are verified as ``at+jwt`` for ``bai-api``, visitor tokens as ``bai-visitor+jwt``
for ``bai-visitor``, so neither passes as the other. The access rule itself (credential
type, scopes, visitor paths, a workspace role) is ``bai_platform.access``, which every
service applies again. The identity is minted for the audience of the forwarded path's
service (``bai-planner``...; ``bai-gateway`` for the gateway's own routes), lazily and
cached per audience, so an identity taken from one service is refused by another.

Verified credentials are cached (bounded, by token digest): an access token for at most
``IDENTITY_TTL_SECONDS - IDENTITY_MIN_REMAINING`` (45 s), an API key for at most
``API_KEY_CACHE_SECONDS`` (30 s). An access token is checked against the user's current
membership and role, and refused when it was issued in an earlier session epoch of the
user (a password change moves the epoch on) or in a session (refresh-token family, the
token's ``sid``) that a logout or a reused refresh token has ended. So revocations take
effect within those windows on every replica; revoking a key or ending a session drops
it from the cache of the process that did it at once.
"""

import math
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

from cachetools import TTLCache

from bai_contracts import VISITOR_CREDENTIAL, VISITOR_ROLE, VISITOR_SCOPE, visitor_subject
from bai_platform import access
from bai_platform.db import Database
from bai_platform.identity import IDENTITY_TTL_SECONDS, mint_identity
from gateway.errors import InvalidToken, enforce
from gateway.service import api_keys, workspaces
from gateway.service.ratelimit import RateLimiter
from gateway.service.signing_keys import KeyStore
from gateway.service.tokens import AccessClaims, token_digest, verify_access_token
from gateway.service.visitors import (
    VisitorClaims,
    check_visitor_origin,
    is_visitor_token,
    verify_visitor_token,
    widget_of,
)
from gateway.settings import GatewaySettings

QUERY_TOKEN_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "jwt"})
# An identity is handed out only while it still has this long to live at the service.
IDENTITY_MIN_REMAINING = 15
API_KEY_CACHE_SECONDS = 30


@dataclass(frozen=True, slots=True)
class _Claims:
    subject: str
    tenant_id: str
    roles: list[str]
    scopes: list[str]
    credential: str
    plan: str | None


@dataclass(frozen=True, slots=True)
class _Decision:
    claims: _Claims
    valid_until: float
    key_prefix: str | None = None
    # An access token's session (refresh family), so that ending it drops the decision.
    session_id: UUID | None = None
    # A visitor token's origin: set only for visitors, who are held to the chat paths.
    visitor_origin: str | None = None
    # The identity tokens minted for this credential so far, by audience (one per service
    # it has called): minted on first use, cached with the decision.
    identities: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Allowed:
    """What Traefik copies onto the forwarded request."""

    identity: str
    headers: dict[str, str]


class ForwardAuth:
    def __init__(
        self, *, settings: GatewaySettings, keys: KeyStore, db: Database, limiter: RateLimiter
    ) -> None:
        self._settings, self._keys, self._db, self._limiter = settings, keys, db, limiter
        ttl = IDENTITY_TTL_SECONDS - IDENTITY_MIN_REMAINING
        self._cache: TTLCache[str, _Decision] = TTLCache(
            maxsize=max(settings.verify_cache_size, 1), ttl=ttl
        )

    async def decide(
        self,
        *,
        authorization: str | None,
        forwarded_uri: str | None,
        method: str | None,
        origin: str | None = None,
    ) -> Allowed:
        """The identity for this request and its rate-limit fields; raises what to answer."""
        path = _refuse_query_tokens(forwarded_uri)
        token = _bearer(authorization)
        key = token_digest(token)
        decision = self._cache.get(key)
        if decision is None or decision.valid_until <= time.time():
            decision = await self._verify(token)
            self._cache[key] = decision
        claims = decision.claims  # the rule every service applies again (bai_platform.access)
        access.check(
            credential=claims.credential,
            roles=claims.roles,
            scopes=claims.scopes,
            method=method or "GET",
            path=path,
        )
        if decision.visitor_origin is not None:  # and only from the page it was minted for
            check_visitor_origin(decision.visitor_origin, origin=origin)
        identity = self._identity(decision, access.audience_for(path))
        return Allowed(identity, await self._count(decision.claims))

    async def _count(self, claims: _Claims) -> dict[str, str]:
        """One hit for the credential and one for its tenant (a visitor's widget); the
        tighter one answers."""
        limits = self._settings.rate_limits
        if claims.credential == VISITOR_CREDENTIAL:
            # Never the tenant's bucket: a visitor flood must leave the team served.
            hits = [
                (limits.visitor_policy, claims.subject),
                (limits.widget_policy, f"widget:{widget_of(claims.subject)}"),
            ]
        else:
            hits = [
                (limits.credential_policy, f"credential:{claims.subject}"),
                (limits.tenant_policy(claims.plan), f"tenant:{claims.tenant_id}"),
            ]
        return enforce(await self._limiter.check_all(hits))

    def forget_api_key(self, prefix: str) -> None:
        """Stop accepting a revoked key in this process at once."""
        for digest, decision in list(self._cache.items()):
            if decision.key_prefix == prefix:
                self._cache.pop(digest, None)

    def forget_session(self, session_id: UUID) -> None:
        """Stop accepting an ended session's access tokens in this process at once."""
        for digest, decision in list(self._cache.items()):
            if decision.session_id == session_id:
                self._cache.pop(digest, None)

    async def _verify(self, token: str) -> _Decision:
        if api_keys.looks_like_api_key(token):
            return await self._verify_api_key(token)
        if is_visitor_token(token):
            return await self._verify_visitor(token)
        claims = await self._verify_access_token(token)
        state = await self._current_state(claims)
        identity_expiry = time.time() + IDENTITY_TTL_SECONDS - IDENTITY_MIN_REMAINING
        minted = _Claims(
            claims.subject, str(claims.tenant_id), [state.role], claims.scopes, "user", state.plan
        )
        until = min(claims.expires_at, identity_expiry)
        return _Decision(minted, until, session_id=claims.session_id)

    async def _current_state(self, claims: AccessClaims) -> workspaces.SessionState:
        """The role now: removals, role changes and ended sessions apply within the cache TTL."""
        try:
            user_id = UUID(claims.subject)
        except ValueError as exc:
            raise InvalidToken("the access token names no valid user") from exc
        async with self._db.read_sessionmaker() as session:
            state = await workspaces.session_state(
                session,
                user_id=user_id,
                tenant_id=claims.tenant_id,
                session_id=claims.session_id,
            )
        if state is None:
            raise InvalidToken("you are not a member of this workspace any more")
        if claims.session_epoch != state.session_epoch or state.session_ended:
            raise InvalidToken("this session has been ended; sign in again")
        return state

    async def _verify_access_token(self, token: str) -> AccessClaims:
        settings = self._settings

        def verify() -> AccessClaims:
            return verify_access_token(
                self._keys.ring,
                token,
                issuer=settings.token_issuer,
                audience=settings.token_audience,
            )

        try:
            return verify()
        except InvalidToken:
            if not await self._keys.knows_after_reload(token):  # another replica rotated?
                raise
            return verify()

    async def _verify_visitor(self, token: str) -> _Decision:
        def verify() -> VisitorClaims:
            return verify_visitor_token(self._keys.ring, token, issuer=self._settings.token_issuer)

        try:
            visitor = verify()
        except InvalidToken:
            if not await self._keys.knows_after_reload(token):
                raise
            visitor = verify()
        async with self._db.read_sessionmaker() as session:
            plan = await workspaces.tenant_plan(session, tenant_id=visitor.tenant_id)
        claims = _Claims(
            visitor_subject(visitor.widget_id, visitor.visitor_id),
            str(visitor.tenant_id),
            [VISITOR_ROLE],
            [VISITOR_SCOPE],
            VISITOR_CREDENTIAL,
            plan,
        )
        identity_expiry = time.time() + IDENTITY_TTL_SECONDS - IDENTITY_MIN_REMAINING
        until = min(visitor.expires_at, identity_expiry)
        return _Decision(claims, until, visitor_origin=visitor.origin)

    async def _verify_api_key(self, token: str) -> _Decision:
        async with self._db.transaction() as session:
            row = await api_keys.authenticate(session, token)
            plan = await workspaces.tenant_plan(session, tenant_id=row.tenant_id)
        until = time.time() + API_KEY_CACHE_SECONDS
        if row.expires_at is not None:
            until = min(until, row.expires_at.timestamp())
        claims = _Claims(
            f"key:{row.id}", str(row.tenant_id), [row.role], row.scopes, "api_key", plan
        )
        return _Decision(claims, until, key_prefix=row.prefix)

    def _identity(self, decision: _Decision, audience: str) -> str:
        """The identity token for the service ``audience`` names: a token for one service
        is refused by every other, so a credential gets one per service it calls.

        Minted lazily, it still expires when one minted with the decision would have:
        ``IDENTITY_MIN_REMAINING`` after the decision's window, never later."""
        identity = decision.identities.get(audience)
        if identity is None:
            key, settings, claims = self._keys.ring.current, self._settings, decision.claims
            left = math.ceil(decision.valid_until - time.time()) + IDENTITY_MIN_REMAINING
            identity = mint_identity(
                key=key.private_key,
                kid=key.kid,
                issuer=settings.identity_issuer,
                audience=audience,
                subject=claims.subject,
                tenant_id=claims.tenant_id,
                roles=claims.roles,
                scopes=claims.scopes,
                credential=claims.credential,
                ttl_seconds=min(left, IDENTITY_TTL_SECONDS),
            )
            decision.identities[audience] = identity
        return identity


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("send an access token as 'Authorization: Bearer <token>'")
    return token.strip()


def _refuse_query_tokens(forwarded_uri: str | None) -> str:
    """The forwarded path, once sure no credential rides in its query string."""
    parts = urlsplit(forwarded_uri or "")
    params = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if params & QUERY_TOKEN_PARAMS:
        raise InvalidToken("tokens in the query string are refused; use the Authorization header")
    return parts.path
