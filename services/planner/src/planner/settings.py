from typing import ClassVar

from pydantic import Field, SecretStr

from bai_platform.dispatching import DispatchSettings


class PlannerSettings(DispatchSettings):
    """Publishing through n8n workflows as ``DispatchSettings`` says, with planner's own
    defaults: due posts are looked for every 5 s, a dispatch is tried up to 6 times."""

    service_name: str = "planner"
    port: int = 8102
    secret_fields: ClassVar[tuple[str, ...]] = ("secret_key",)

    # Signs client review links and encrypts publishing secrets (each under its own key).
    secret_key: SecretStr = SecretStr("dev-insecure-planner-secret-change-me")
    # Where people reach the edge: review links and callback URLs are built on it.
    public_base_url: str = "http://127.0.0.1:8080"
    # A reminder event goes out this long before an unanswered review link expires.
    review_reminder_hours: float = Field(default=24.0, gt=0)
    review_sweep_seconds: float = Field(default=60.0, gt=0)
    # Publishing: how often due posts are looked for (and jobs sent, and overdue ones
    # ended), and how dispatch is retried.
    dispatch_poll_seconds: float = Field(default=5.0, gt=0)
    dispatch_max_attempts: int = Field(default=6, ge=1)
    dispatch_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    # A dispatched post with no callback by then is marked failed.
    publish_callback_deadline_seconds: float = Field(default=3600.0, gt=0)
