"""The base class every event payload derives from."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from bai_contracts.streams import STREAMS


class EventContract(BaseModel):
    """An event payload; ``subject`` names where it is published."""

    # Unknown fields are ignored so that producers can add optional fields first.
    model_config = ConfigDict(frozen=True, extra="ignore")

    subject: ClassVar[str]


def stream_for_subject(subject: str) -> str:
    """Name the JetStream stream that holds ``subject``."""
    for spec in STREAMS:
        if subject.startswith(spec.prefix):
            return spec.name
    raise LookupError(f"no stream holds subject {subject!r}")
