"""JetStream streams: one per owning service, plus the dead-letter stream."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream and the subjects it holds."""

    name: str
    service: str

    @property
    def subjects(self) -> list[str]:
        return [f"bai.{self.service}.>"]

    @property
    def prefix(self) -> str:
        return f"bai.{self.service}."


STREAMS: tuple[StreamSpec, ...] = tuple(
    StreamSpec(name=service.upper(), service=service)
    for service in ("gateway", "planner", "creator", "mining", "billing")
)

DEAD_LETTER_STREAM = StreamSpec(name="DEADLETTER", service="dlq")
