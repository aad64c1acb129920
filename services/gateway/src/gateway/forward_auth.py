"""The ForwardAuth decision Traefik asks for on every protected request.

Input: the caller's ``Authorization: Bearer`` (never a token from the query string).
Output: 200 with ``X-BAI-Identity`` or a problem+json 401. A verified credential's
identity is cached (bounded, by token digest) until shortly before either token expires,
so most decisions cost one dictionary lookup.
"""

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from cachetools import TTLCache

from bai_platform.identity import IDENTITY_TTL_SECONDS, mint_identity
from gateway.errors import InvalidToken
from gateway.keys import KeyRing
from gateway.settings import GatewaySettings
from gateway.tokens import token_digest, verify_access_token

QUERY_TOKEN_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "jwt"})
# An identity is handed out only while it still has this long to live at the service.
IDENTITY_MIN_REMAINING = 15


@dataclass(frozen=True, slots=True)
class _Decision:
    identity: str
    valid_until: float


class ForwardAuth:
    def __init__(self, *, settings: GatewaySettings, ring: KeyRing) -> None:
        self._settings, self._ring = settings, ring
        ttl = IDENTITY_TTL_SECONDS - IDENTITY_MIN_REMAINING
        self._cache: TTLCache[str, _Decision] = TTLCache(
            maxsize=max(settings.verify_cache_size, 1), ttl=ttl
        )

    def decide(self, *, authorization: str | None, forwarded_uri: str | None) -> str:
        """The identity token for this request, or an error to answer with."""
        _refuse_query_tokens(forwarded_uri)
        token = _bearer(authorization)
        key = token_digest(token)
        cached = self._cache.get(key)
        if cached is not None and cached.valid_until > time.time():
            return cached.identity
        decision = self._verify(token)
        self._cache[key] = decision
        return decision.identity

    def _verify(self, token: str) -> _Decision:
        settings = self._settings
        claims = verify_access_token(
            self._ring, token, issuer=settings.token_issuer, audience=settings.token_audience
        )
        key = self._ring.current
        identity = mint_identity(
            key=key.private_key,
            kid=key.kid,
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
            subject=claims.subject,
            tenant_id=claims.tenant_id,
            roles=claims.roles,
            scopes=claims.scopes,
            credential="user",
        )
        identity_expiry = time.time() + IDENTITY_TTL_SECONDS - IDENTITY_MIN_REMAINING
        return _Decision(identity=identity, valid_until=min(claims.expires_at, identity_expiry))


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("send an access token as 'Authorization: Bearer <token>'")
    return token.strip()


def _refuse_query_tokens(forwarded_uri: str | None) -> None:
    if not forwarded_uri:
        return
    params = {name.lower() for name, _ in parse_qsl(urlsplit(forwarded_uri).query)}
    if params & QUERY_TOKEN_PARAMS:
        raise InvalidToken("tokens in the query string are refused; use the Authorization header")
