"""n8n callbacks: the gateway hands them, as received, to the service owning the job.

The job id's prefix names the owner (``gen_`` creator, ``ext_`` mining, ``pub_`` planner;
the gateway's routing table is a setting). The gateway sends the raw body and the
signature headers to the owner by NATS request/reply (``callback_delivery_subject``); the
owner verifies them with the tenant's secret, which never leaves it, records the
callback in its own outbox as ``CallbackReceived`` (on ``callback_subject``, in its own
stream, with a dedupe id), and answers its verdict, which the gateway returns to n8n.
"""

import base64
import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from bai_contracts._base import EventContract


def callback_delivery_subject(service: str) -> str:
    """Where ``service`` takes the callbacks of its jobs from the gateway."""
    return f"bai.rpc.{service}.callback"


def callback_subject(service: str) -> str:
    """Where ``service`` records the callbacks it verified, for its own consumer."""
    return f"bai.{service}.callback.received.v1"


class CallbackDelivery(BaseModel):
    """A callback as the gateway received it: nothing in it is verified yet."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    body_base64: str
    timestamp: str | None = None  # X-BAI-Timestamp
    signature: str | None = None  # X-BAI-Signature
    secret: str | None = None  # X-BAI-Secret, the original system's shared-secret header

    @classmethod
    def of(
        cls,
        job_id: str,
        body: bytes,
        *,
        timestamp: str | None,
        signature: str | None,
        secret: str | None,
    ) -> "CallbackDelivery":
        encoded = base64.b64encode(body).decode()
        return cls(
            job_id=job_id,
            body_base64=encoded,
            timestamp=timestamp,
            signature=signature,
            secret=secret,
        )

    @property
    def body(self) -> bytes:
        return base64.b64decode(self.body_base64, validate=True)


CallbackOutcome = Literal["accepted", "unknown_job", "invalid_signature", "invalid_callback"]


class CallbackVerdict(BaseModel):
    """The owner's answer. ``accepted`` carries the event id; the others say why not."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    outcome: CallbackOutcome
    event_id: str | None = None
    detail: str = ""


def _text_or_absent(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_text(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value)[:100]


# A workflow's text field: anything but a string reads as absent, so that a reply of the
# wrong shape is judged by its owner's rules (and said on the job), never a crash.
WorkflowText = Annotated[str | None, BeforeValidator(_text_or_absent)]
# A workflow's status: a value that is not a string is kept as its JSON, to be named as an
# unknown status.
WorkflowStatus = Annotated[str | None, BeforeValidator(_as_text)]


class WorkflowReport(BaseModel):
    """What every n8n callback body says besides its owner's own fields (each owner reads
    its callbacks as a subclass: ``GenerationResult``, ``PublishResult``, mining's pages)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: WorkflowText = None
    status: WorkflowStatus = None
    error: WorkflowText = None


class CallbackReceived(EventContract):
    """A verified n8n callback for a job of the service that recorded it."""

    # Recorded on callback_subject(owner); this names the family for documentation.
    subject: ClassVar[str] = "bai.{service}.callback.received.v1"

    job_id: str
    payload: dict[str, Any]
    verified_by: Literal["signature", "secret_header"]
