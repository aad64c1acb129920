"""The owner's side of n8n callback routing: answer "how are this job's callbacks verified?".

The gateway asks the service a job id's prefix names, over NATS request/reply (a NATS
micro service, so ``$SRV`` discovery lists it and the queue group spreads the questions
over the service's workers). The service looks the job up in its own database and
answers with the job's tenant and the secret its engine signs with.
"""

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from nats.micro import add_service
from nats.micro.request import Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CallbackVerification,
    CallbackVerificationRequest,
    callback_verification_subject,
)
from bai_platform.worker import Task, WorkerContext

Lookup = Callable[[AsyncSession, str], Awaitable[CallbackVerification]]
log = structlog.get_logger("bai.callbacks")


def callback_verification_task(lookup: Lookup) -> Callable[[WorkerContext], Task]:
    """A worker task serving the service's verification endpoint until the worker stops."""

    def build(ctx: WorkerContext) -> Task:
        service_name = ctx.settings.service_name

        async def handle(request: Request) -> None:
            try:
                job_id = CallbackVerificationRequest.model_validate_json(request.data).job_id
            except ValidationError:
                await request.respond_error("400", "the request names no job_id")
                return
            async with ctx.db.transaction() as session:
                answer = await lookup(session, job_id)
            await request.respond(answer.model_dump_json().encode())

        async def run(stop: asyncio.Event) -> None:
            service = await add_service(
                ctx.nc,
                name=f"{service_name}-callbacks",
                version="1.0.0",
                description=f"how callbacks of {service_name} jobs are verified",
            )
            await service.add_endpoint(
                name="callback_verification",
                subject=callback_verification_subject(service_name),
                handler=handle,
            )
            log.info("callback verification serving", service=service_name)
            try:
                await stop.wait()
            finally:
                await service.stop()

        return run

    return build
