import json
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from bai_platform.identity import IDENTITY_TTL_SECONDS
from bai_platform.settings import ServiceSettings
from gateway.ratelimit import RateLimitSettings

Network = IPv4Network | IPv6Network


def _loopback() -> list[Network]:
    return [ip_network("127.0.0.1/32"), ip_network("::1/128")]


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
    # The proxies whose X-Forwarded-For is believed (Traefik, a load balancer before it):
    # addresses or networks, comma-separated or JSON. Per-IP limits count the right-most
    # address of the header that is not one of them. Loopback by default (the local stack).
    trusted_proxies: Annotated[list[Network], NoDecode] = Field(default_factory=_loopback)
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
    # How often each process re-reads the signing keys (rotations by other processes).
    key_reload_seconds: float = Field(default=30.0, gt=0)
    # Left unset, a new key signs once it is key_reload_seconds + 5 old.
    key_activation_override_seconds: float | None = Field(default=None, ge=0)
    # A token naming a key this process does not know reloads the keys at most this often.
    unknown_kid_reload_seconds: float = Field(default=5.0, ge=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        """``10.0.0.0/8, 192.168.1.7`` or a JSON list; a bare address is its /32 or /128."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):
            return [ip_network(str(item).strip()) for item in value if str(item).strip()]
        return value

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
