"""Access tokens (EdDSA JWT, ``typ=at+jwt``) and opaque refresh tokens.

An access token names its session: ``sid``, the refresh-token family it was issued with
(a sign-in, and every rotation of its refresh token). Ending the session (logout, or a
reused refresh token) revokes the family, and ForwardAuth refuses the family's access
tokens from then on; ``sep``, the user's session epoch, ends them all at once.

Verification pins the algorithm to EdDSA, the type to ``at+jwt`` (a refresh or identity
token is never an access token), checks ``iss``, ``aud``, ``exp``, ``nbf`` with a small
leeway and never follows ``jku`` / ``x5u``.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import jwt

from gateway.errors import InvalidToken
from gateway.service.signing_keys import KeyRing, verification_key

ACCESS_TYP = "at+jwt"
LEEWAY_SECONDS = 5
REFRESH_PREFIX = "rt_"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    tenant_id: UUID
    roles: list[str]
    scopes: list[str]
    expires_at: int
    session_epoch: int
    token_id: str
    # None only in tokens issued before sessions were named (they expire within the TTL).
    session_id: UUID | None = None


def issue_access_token(
    ring: KeyRing,
    *,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    user_id: UUID,
    tenant_id: UUID,
    roles: list[str],
    session_epoch: int = 0,
    session_id: UUID | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": str(user_id),
        "tid": str(tenant_id),
        "roles": roles,
        "scope": "api",
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid4().hex,
        "sep": session_epoch,
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    key = ring.current
    return jwt.encode(
        claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": ACCESS_TYP}
    )


def verify_access_token(ring: KeyRing, token: str, *, issuer: str, audience: str) -> AccessClaims:
    try:
        if str(jwt.get_unverified_header(token).get("typ", "")).lower() != ACCESS_TYP:
            raise InvalidToken("this is not an access token")
        claims = jwt.decode(
            token,
            verification_key(ring, token),
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "nbf", "sub", "tid", "jti"]},
        )
        tenant_id = UUID(str(claims["tid"]))
        session_id = UUID(str(claims["sid"])) if "sid" in claims else None
    # PyJWTError, not InvalidTokenError: an unknown kid raises InvalidKeyError, which is not one.
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(f"the access token is not valid: {exc}") from exc
    return AccessClaims(
        subject=str(claims["sub"]),
        tenant_id=tenant_id,
        roles=list(claims.get("roles") or []),
        scopes=str(claims.get("scope", "")).split(),
        expires_at=int(claims["exp"]),
        session_epoch=int(claims.get("sep", 0)),
        token_id=str(claims["jti"]),
        session_id=session_id,
    )


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """SHA-256 of a high-entropy token: enough at rest, unlike for passwords."""
    return hashlib.sha256(token.encode()).hexdigest()
