from typing import ClassVar

from pydantic import Field, SecretStr

from bai_platform.dispatching import DispatchSettings


class MiningSettings(DispatchSettings):
    """Dispatch to n8n workflows for ``n8n`` sources as ``DispatchSettings`` says."""

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
