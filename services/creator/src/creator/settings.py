from typing import ClassVar

from pydantic import Field, SecretStr

from bai_platform.settings import ServiceSettings


class CreatorSettings(ServiceSettings):
    service_name: str = "creator"
    port: int = 8103
    secret_fields: ClassVar[tuple[str, ...]] = ("secret_key",)

    # Encrypts the tenants' engine secrets and API keys (a key derived for that purpose).
    secret_key: SecretStr = SecretStr("dev-insecure-creator-secret-change-me")
    # How often the worker looks for queued jobs of the built-in engine.
    builtin_poll_seconds: float = Field(default=0.5, gt=0)
    # Dispatch to n8n workflows: how often queued jobs are looked for, how often a
    # dispatch is tried, and the backoff between tries (exponential, full jitter).
    dispatch_poll_seconds: float = Field(default=0.5, gt=0)
    dispatch_max_attempts: int = Field(default=5, ge=1)
    dispatch_backoff_base_seconds: float = Field(default=2.0, gt=0)
    dispatch_backoff_cap_seconds: float = Field(default=120.0, gt=0)
    dispatch_timeout_seconds: float = Field(default=10.0, gt=0)
    # Consecutive failures that open an endpoint's circuit breaker, and for how long.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    # How long an OpenAI-compatible engine may take to write one post.
    engine_timeout_seconds: float = Field(default=60.0, gt=0)
    # How long billing may take to answer a reservation, a commit or a release.
    billing_timeout_seconds: float = Field(default=2.0, gt=0)
    # How long a chat reply may take (the visitor waits for it).
    chat_timeout_seconds: float = Field(default=20.0, gt=0)
    # How often dispatched jobs past their engine's deadline are timed out.
    sweep_seconds: float = Field(default=5.0, gt=0)
