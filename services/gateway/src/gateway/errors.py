from uuid import UUID

from bai_platform.errors import (
    Conflict,
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from gateway.service.ratelimit import Decision, rate_limit_headers


class EmailTaken(Conflict):
    code = "email_taken"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class WrongPassword(Forbidden):
    code = "wrong_password"


class RefreshTokenReused(Unauthorized):
    """A rotated refresh token came back: its whole family is revoked, and that stands."""

    code = "refresh_token_reused"
    keeps_effects = True

    def __init__(self, detail: str, *, session_id: UUID) -> None:
        super().__init__(detail)
        self.session_id = session_id  # the family that was revoked


class RateLimited(TooManyRequests):
    """Over a quota: the answer carries RateLimit, RateLimit-Policy and Retry-After."""


class RateLimitStoreDown(ServiceUnavailable):
    code = "rate_limit_store_unavailable"


def enforce(decision: Decision) -> dict[str, str]:
    """The rate-limit fields of an allowed hit; a denied one raises 429 (or 503, store down)."""
    headers = rate_limit_headers(decision)
    if decision.allowed:
        return headers
    if decision.store_unavailable:
        raise RateLimitStoreDown("rate limits cannot be checked right now", headers=headers)
    raise RateLimited(f"over the {decision.policy.name} quota; retry later", headers=headers)
