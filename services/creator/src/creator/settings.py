from pydantic import Field

from bai_platform.settings import ServiceSettings


class CreatorSettings(ServiceSettings):
    service_name: str = "creator"
    port: int = 8103
    # How often the worker looks for queued jobs of the built-in engine.
    builtin_poll_seconds: float = Field(default=0.5, gt=0)
