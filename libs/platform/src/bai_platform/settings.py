"""Settings base for every service process.

Values come from the environment (``BAI_`` prefix). Secrets are ``SecretStr`` and a
service lists them in ``secret_fields``: outside dev and test a missing, short or
well-known value refuses to start, as the original system's SECRET_KEY validator did.
"""

import json
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bai_platform.access import service_audience
from bai_platform.messaging import NatsAuth

KNOWN_INSECURE_SECRETS = frozenset(
    {"", "secret", "changeme", "change-me", "password", "dev", "development", "test", "insecure"}
)
MIN_SECRET_LENGTH = 32


Network = IPv4Network | IPv6Network


def _loopback() -> list[Network]:
    return [ip_network("127.0.0.1/32"), ip_network("::1/128")]


class InsecureSecretError(ValueError):
    """A secret setting holds a value that must never reach production."""


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """What every api and worker process needs; services subclass it."""

    # Nested settings from the environment: BAI_RATE_LIMITS__FAIL_OPEN=false.
    model_config = SettingsConfigDict(env_prefix="BAI_", extra="ignore", env_nested_delimiter="__")

    secret_fields: ClassVar[tuple[str, ...]] = ()

    service_name: str = "bai"
    environment: Environment = Environment.DEV
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"

    database_url: SecretStr = SecretStr("postgresql+asyncpg://bai@127.0.0.1:5432/bai")
    database_read_url: SecretStr | None = None
    db_schema: str = ""
    # Connections are opened as needed up to db_pool_size and then kept. Overflow ones are
    # closed as soon as they are handed back to a full pool: under steady concurrency above
    # the pool size every request would open and close one (a PostgreSQL backend each), so
    # the default keeps all twenty instead (bench/README.md, edge_vs_direct).
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # How long a request waits for a pooled connection before it is 503 database_busy:
    # short, so a busy pool answers soon with Retry-After instead of late.
    db_pool_timeout_seconds: float = Field(default=2.5, gt=0)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    # A pooled connection idle this long is pinged before use (0: before every use).
    db_ping_after_idle_seconds: float = Field(default=5.0, ge=0)

    nats_url: str = "nats://127.0.0.1:4222"
    # This service's NATS user (empty: the service name) and its password; without a
    # password the process connects as the URL says (bai_platform.messaging.NatsAuth).
    nats_user: str = ""
    nats_password: SecretStr | None = None
    # The CA that signed the NATS servers' certificate: when set, NATS is reached only over
    # TLS, handshake first (Kubernetes: the nats-routes-tls secret's ca.crt).
    nats_tls_ca_file: str = ""
    # Replicas of the streams this service's worker provisions: 3 on a 3-node cluster.
    stream_replicas: int = Field(default=1, ge=1, le=5)

    identity_jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    identity_issuer: str = "bai-gateway"
    # The audience this service accepts identity tokens for; empty means ``bai-<service_name>``,
    # which is what the gateway mints for the service's paths (bai_platform.access).
    identity_audience: str = ""

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = None

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # The proxies whose X-Forwarded-For is believed (Traefik, a load balancer before it):
    # addresses or networks, comma-separated or JSON. The client is the right-most address
    # of the header that is not one of them (the gateway's per-IP limits count it).
    # Loopback by default (the local stack).
    trusted_proxies: Annotated[list[Network], NoDecode] = Field(default_factory=_loopback)
    # Tenant-given URLs (workflows, engines) may point at private networks only when this is
    # set: n8n on the same machine or cluster (see bai_platform.destinations).
    allow_private_destinations: bool = False
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)
    # On SIGTERM an api first answers /readyz 503 and keeps serving this long, so that a
    # balancer checking readiness stops sending it requests before it stops listening
    # (Kubernetes does it with the pod's preStop sleep; make run with replicas uses this).
    drain_delay_seconds: float = Field(default=0.0, ge=0, le=60)
    docs_enabled: bool | None = None

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
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def show_docs(self) -> bool:
        """Open API docs in dev and test; closed in production unless asked for."""
        return self.docs_enabled if self.docs_enabled is not None else not self.is_production

    @property
    def schema_name(self) -> str:
        return self.db_schema or self.service_name

    @property
    def nats_auth(self) -> NatsAuth:
        return NatsAuth(
            user=self.nats_user or self.service_name,
            password=self.nats_password,
            ca_file=self.nats_tls_ca_file or None,
        )

    @model_validator(mode="after")
    def _own_audience(self) -> Self:
        if not self.identity_audience:
            self.identity_audience = service_audience(self.service_name)
        return self

    @model_validator(mode="after")
    def _refuse_insecure_secrets(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        # The NATS password is every service's secret, checked whenever it is given.
        given = ("nats_password",) if self.nats_password is not None else ()
        for name in (*self.secret_fields, *given):
            value = getattr(self, name)
            raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
            if raw.lower() in KNOWN_INSECURE_SECRETS or "insecure" in raw.lower():
                raise InsecureSecretError(f"BAI_{name.upper()} holds a known insecure value")
            if len(raw) < MIN_SECRET_LENGTH:
                raise InsecureSecretError(
                    f"BAI_{name.upper()} must be at least {MIN_SECRET_LENGTH} characters"
                )
        return self
