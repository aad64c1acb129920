from typing import ClassVar

from pydantic import Field, SecretStr

from bai_platform.settings import ServiceSettings


class MiningSettings(ServiceSettings):
    service_name: str = "mining"
    port: int = 8104
    secret_fields: ClassVar[tuple[str, ...]] = ("secret_key",)

    # Encrypts the tenants' mining workflow secrets (a key derived for that purpose).
    secret_key: SecretStr = SecretStr("dev-insecure-mining-secret-change-me")
    # Politeness: the least time between two requests to the same host.
    crawl_delay_seconds: float = Field(default=1.0, ge=0)
    crawl_timeout_seconds: float = Field(default=15.0, gt=0)
    crawl_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    crawl_user_agent: str = "BAI-Mining/1 (+https://bai.dev/bot)"
    # The crawler fetches whatever pages link to, so it has its own switch for internal
    # addresses (off: every internal address refused), apart from tenants' workflows.
    crawl_allow_private: bool = False
    # Hosts an operator trusts though they are internal (a fixture site, an intranet),
    # e.g. ["127.0.0.1"]; every other internal address stays refused.
    crawl_allowed_hosts: list[str] = Field(default_factory=list)
    # How often the worker looks for queued jobs.
    job_poll_seconds: float = Field(default=1.0, gt=0)
    # Dispatch to n8n workflows (as creator's): how often queued jobs are looked for, how
    # often a dispatch is tried, and the backoff between tries (exponential, full jitter).
    dispatch_poll_seconds: float = Field(default=0.5, gt=0)
    dispatch_max_attempts: int = Field(default=5, ge=1)
    dispatch_backoff_base_seconds: float = Field(default=2.0, gt=0)
    dispatch_backoff_cap_seconds: float = Field(default=120.0, gt=0)
    dispatch_timeout_seconds: float = Field(default=10.0, gt=0)
    # Consecutive failures that open an endpoint's circuit breaker, and for how long.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    # How often n8n jobs past their workflow's deadline are ended.
    sweep_seconds: float = Field(default=5.0, gt=0)
