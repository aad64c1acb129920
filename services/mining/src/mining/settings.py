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
    # Politeness: the least time between the starts of two requests to the same host, and
    # how many requests one host gets at a time; all hosts of one crawl, at most
    # crawl_concurrency at a time.
    crawl_delay_seconds: float = Field(default=1.0, ge=0)
    crawl_host_concurrency: int = Field(default=1, ge=1, le=8)
    crawl_concurrency: int = Field(default=4, ge=1, le=32)
    # A fetch that may pass later (timeout, reset, 429, 5xx) is tried again this many
    # times, after crawl_retry_base_seconds doubling each time (or the site's Retry-After).
    crawl_retries: int = Field(default=2, ge=0, le=5)
    crawl_retry_base_seconds: float = Field(default=1.0, ge=0)
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
    # Fairness between workspaces (website jobs): how many jobs one worker runs at once;
    # how many of one workspace run at once across all workers (the worker picks the next
    # job round-robin by workspace, the one served least recently first); how many jobs
    # one workspace may have queued (more are refused with 429 too_many_queued_jobs); and
    # the wall-clock limit of one job, after which it ends with what it has read.
    crawl_jobs_at_once: int = Field(default=4, ge=1, le=64)
    crawl_jobs_per_workspace: int = Field(default=1, ge=1, le=64)
    crawl_queued_per_workspace: int = Field(default=20, ge=1, le=10_000)
    crawl_job_deadline_seconds: float = Field(default=900.0, gt=0)
