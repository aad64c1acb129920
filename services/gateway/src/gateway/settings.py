from typing import ClassVar

from pydantic import Field, SecretStr

from bai_platform.identity import IDENTITY_TTL_SECONDS
from bai_platform.settings import ServiceSettings
from gateway.service.ratelimit import RateLimitSettings


class GatewaySettings(ServiceSettings):
    secret_fields: ClassVar[tuple[str, ...]] = ("key_encryption_secret",)

    service_name: str = "gateway"
    port: int = 8101

    # Encrypts the Ed25519 private keys at rest; refused outside dev when left insecure.
    key_encryption_secret: SecretStr = SecretStr("dev-insecure-key-encryption-secret-change-me")
    token_issuer: str = "bai-gateway"
    token_audience: str = "bai-api"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    # Website chat visitor tokens (POST /v1/chat/visitor-token); the widget fetches anew.
    visitor_token_ttl_seconds: int = Field(default=3600, ge=60, le=24 * 3600)
    verify_cache_size: int = Field(default=10_000, ge=0)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    # Live events (SSE): how far back Last-Event-ID resumes, and a per-workspace cap.
    live_streams: list[str] = Field(
        default_factory=lambda: ["PLANNER", "CREATOR", "MINING", "BILLING"]
    )
    live_retention_seconds: float = Field(default=600.0, gt=0)
    live_max_connections_per_tenant: int = Field(default=100, ge=1)
    live_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # The services behind the edge (internal URLs), for the aggregated OpenAPI document.
    service_urls: dict[str, str] = Field(default_factory=dict)
    # n8n callbacks: job-id prefix -> the service that owns such jobs.
    callback_routes: dict[str, str] = Field(
        default_factory=lambda: {"gen": "creator", "ext": "mining", "pub": "planner"}
    )
    # How long a callback waits for its owner's verdict (handed over again while no owner
    # process listens, as during a restart); past it the answer is 503.
    callback_owner_deadline_seconds: float = Field(default=5.0, gt=0)
    # How often each process re-reads the signing keys (rotations by other processes).
    key_reload_seconds: float = Field(default=30.0, gt=0)
    # Left unset, a new key signs once it is key_reload_seconds + 5 old.
    key_activation_override_seconds: float | None = Field(default=None, ge=0)
    # A token naming a key this process does not know reloads the keys at most this often.
    unknown_kid_reload_seconds: float = Field(default=5.0, ge=0)

    @property
    def key_activation_seconds(self) -> float:
        """How old a new key is before it signs: every gateway process has loaded it."""
        if self.key_activation_override_seconds is not None:
            return self.key_activation_override_seconds
        return self.key_reload_seconds + 5

    @property
    def key_retirement_grace_seconds(self) -> int:
        """How long a rotated-out key still verifies: it may sign until the new key is
        active, and every token it signed (access or visitor) has expired after that."""
        longest = max(self.access_token_ttl_seconds, self.visitor_token_ttl_seconds)
        grace = self.key_activation_seconds + longest + IDENTITY_TTL_SECONDS
        return int(grace) + 60
