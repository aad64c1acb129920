"""The owner's side of n8n callback routing: answer "how are this job's callbacks verified?".

The gateway asks the service a job id's prefix names, over NATS request/reply (a NATS
micro service, so ``$SRV`` discovery lists it and the queue group spreads the questions
over the service's workers). The service looks the job up in its own database and
answers with the job's tenant and the secret its engine signs with.
"""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CallbackVerification,
    CallbackVerificationRequest,
    callback_verification_subject,
)
from bai_platform.rpc import Endpoint, rpc_task
from bai_platform.worker import Task, WorkerContext

Lookup = Callable[[AsyncSession, str], Awaitable[CallbackVerification]]


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
