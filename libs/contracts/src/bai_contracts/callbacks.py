"""n8n callbacks: the gateway verifies them and hands them to the service owning the job.

The job id's prefix names the owner (``gen_`` creator, ``ext_`` mining, ``pub_`` planner;
the gateway's routing table is a setting). The gateway asks the owner, by NATS
request/reply, how to verify a job's callbacks, then publishes the verified callback on
``bai.gateway.<owner>_callback.received.v1`` with a dedupe id.
"""

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from bai_contracts._base import EventContract


def callback_verification_subject(service: str) -> str:
    """Where ``service`` answers "how are callbacks of this job verified?"."""
    return f"bai.rpc.{service}.callback_verification"


def callback_subject(service: str) -> str:
    """Where the gateway publishes verified callbacks for ``service``."""
    return f"bai.gateway.{service}_callback.received.v1"


class CallbackVerificationRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str


class CallbackVerification(BaseModel):
    """The owner's answer: the job's tenant and the secret its engine signs with."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    found: bool
    tenant_id: UUID | None = None
    secret: str | None = None
    # The original system's shared-secret header, for tenants whose engine still sends it.
    accept_secret_header: bool = False


class CallbackReceived(EventContract):
    """A verified n8n callback for a job of the receiving service."""

    # Published on callback_subject(owner); this names the family for documentation.
    subject: ClassVar[str] = "bai.gateway.{service}_callback.received.v1"

    job_id: str
    payload: dict[str, Any]
    verified_by: Literal["signature", "secret_header"]
