"""The envelope every event travels in: CloudEvents 1.0 attributes, structured JSON mode.

``type`` is the NATS subject; ``tenantid`` and ``traceparent`` are extension attributes.
The payload (``data``) is a contract from ``bai_contracts``.
"""

import builtins
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from uuid import UUID, uuid4

from opentelemetry import propagate
from pydantic import BaseModel, ConfigDict, Field

from bai_contracts import EventContract

ContractT = TypeVar("ContractT", bound=EventContract)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=64)
    source: str
    type: str
    time: datetime
    subject: str | None = None
    tenantid: str | None = None
    traceparent: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    def payload(self, contract: builtins.type[ContractT]) -> ContractT:
        """The data, validated as ``contract``."""
        return contract.model_validate(self.data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def new_event(
    event: EventContract,
    *,
    source: str,
    tenant_id: UUID | str | None,
    subject: str | None = None,
    event_id: str | None = None,
    event_type: str | None = None,
) -> Envelope:
    """Wrap a contract into an envelope stamped with a fresh id, time and trace.

    ``event_id`` replaces the random id where the id must dedupe (the same input, the same
    id); ``event_type`` replaces the contract's subject for contracts published per owner.
    """
    return Envelope(
        id=event_id or f"evt_{uuid4().hex}",
        source=source,
        type=event_type or event.subject,
        time=datetime.now(UTC),
        subject=subject,
        tenantid=str(tenant_id) if tenant_id is not None else None,
        traceparent=current_traceparent(),
        data=event.model_dump(mode="json"),
    )
