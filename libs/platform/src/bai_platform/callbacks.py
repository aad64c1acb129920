"""The owner's side of n8n callback routing: answer "how are this job's callbacks verified?".

The gateway asks the service a job id's prefix names, over NATS request/reply (a NATS
micro service, so ``$SRV`` discovery lists it and the queue group spreads the questions
over the service's workers). The service looks the job up in its own database and
answers with the job's tenant and the secret its engine signs with.
"""

from collections.abc import Awaitable, Callable
from typing import Protocol
from uuid import UUID

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CallbackVerification,
    CallbackVerificationRequest,
    callback_verification_subject,
)
from bai_platform.rpc import Endpoint, rpc_task
from bai_platform.secrets import read_secret
from bai_platform.worker import Task, WorkerContext

Lookup = Callable[[AsyncSession, str], Awaitable[CallbackVerification]]


class SignedWorkflow(Protocol):
    """A tenant's workflow as stored: its signing secret encrypted."""

    @property
    def secret(self) -> bytes | None: ...

    @property
    def accept_secret_header(self) -> bool: ...


def verification(
    tenant_id: UUID, workflow: SignedWorkflow | None, *, box: Fernet
) -> CallbackVerification:
    """The answer for a job of ``tenant_id`` that ``workflow`` was given. With no workflow
    or a secret that cannot be read, the secret is empty: nothing verifies against it."""
    secret = read_secret(box, workflow.secret) if workflow is not None else None
    return CallbackVerification(
        found=True,
        tenant_id=tenant_id,
        secret=secret or "",
        accept_secret_header=workflow is not None and workflow.accept_secret_header,
    )


def callback_verification_task(service: str, lookup: Lookup) -> Callable[[WorkerContext], Task]:
    """A worker task serving ``service``'s verification endpoint until the worker stops."""

    async def answer(
        session: AsyncSession, question: CallbackVerificationRequest
    ) -> CallbackVerification:
        return await lookup(session, question.job_id)

    endpoint = Endpoint(
        "callback_verification",
        callback_verification_subject(service),
        CallbackVerificationRequest,
        answer,
    )
    return rpc_task(
        f"{service}-callbacks",
        [endpoint],
        description=f"how callbacks of {service} jobs are verified",
    )
