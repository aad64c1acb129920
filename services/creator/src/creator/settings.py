from typing import ClassVar

from pydantic import Field, SecretStr

from bai_platform.dispatching import DispatchSettings


class CreatorSettings(DispatchSettings):
    """Dispatch to n8n workflows as ``DispatchSettings`` says; OpenAI-compatible engines are
    polled and retried by the same ``dispatch_*`` numbers."""

    service_name: str = "creator"
    port: int = 8103
    secret_fields: ClassVar[tuple[str, ...]] = ("secret_key",)

    # Encrypts the tenants' engine secrets and API keys (a key derived for that purpose).
    secret_key: SecretStr = SecretStr("dev-insecure-creator-secret-change-me")
    # How often the worker looks for queued jobs of the built-in engine.
    builtin_poll_seconds: float = Field(default=0.5, gt=0)
    # How long one call to an OpenAI-compatible engine may take to write one post, from
    # the name lookup to the last byte (a tenant's engine may drip its answer).
    engine_deadline_seconds: float = Field(default=60.0, gt=0)
    # How long billing may take to answer a reservation, a commit or a release.
    billing_timeout_seconds: float = Field(default=2.0, gt=0)
    # How long the workspace's engine (OpenAI-compatible, or an n8n workflow) may take to
    # write a chat reply, the whole call; the visitor waits for it.
    chat_deadline_seconds: float = Field(default=20.0, gt=0)
    # Chat replies being written at once per workspace, in each API process; past it a
    # visitor is told 503 assistant_busy (Retry-After) and nothing is spent.
    chat_workspace_concurrency: int = Field(default=4, ge=1)
    # Engine calls in flight at once in one worker, and per workspace (across workers):
    # a workspace with many or slow jobs waits for its own turns, not everyone else.
    engine_concurrency: int = Field(default=16, ge=1)
    engine_workspace_concurrency: int = Field(default=2, ge=1)
    # A job still mid-call this long after its engine deadline (its worker crashed or was
    # stopped) is tried again, or failed once its attempts are used up.
    engine_recover_margin_seconds: float = Field(default=30.0, gt=0)
