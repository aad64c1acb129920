"""Request/reply between services over NATS micro (queue groups, ``$SRV`` discovery).

A service serves endpoints from its worker (``rpc_task``, an ``RpcServer``): each takes
a Pydantic request, runs in one database transaction, and answers a Pydantic model. A
request that does not parse is answered with a micro error (400); a handler that fails
answers 500 and rolls back. Requests are answered concurrently, at most ``concurrency`` at
a time per process (nats-py hands a subscription's messages over one at a time, so
without this one slow transaction would hold up every question behind it); past that,
the subscription waits.
Callers use ``ask``: an answer, or ``Unreachable`` when nobody answers in time
(no responders for the whole wait, a timeout, NATS down), which callers treat as "try
again later".
"""

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.micro import add_service
from nats.micro.request import Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.worker import WorkerContext

RequestT = TypeVar("RequestT", bound=BaseModel)
AnswerT = TypeVar("AnswerT", bound=BaseModel)
log = structlog.get_logger("bai.rpc")
# While nobody serves a subject (a restart), ``ask`` asks again after these pauses.
NO_RESPONDERS_FIRST_PAUSE = 0.05
NO_RESPONDERS_LAST_PAUSE = 0.5


class Unreachable(Exception):
    """Nobody answered in time; the question may be asked again later."""


@dataclass(frozen=True)
class Endpoint:
    """One question a service answers: ``handler(session, request) -> answer``."""

    name: str
    subject: str
    request: type[BaseModel]
    handler: Callable[[AsyncSession, Any], Awaitable[BaseModel]]


class RpcServer:
    """Serves ``endpoints`` as the NATS micro service ``service`` from one worker process,
    answering at most ``concurrency`` questions at a time."""

    def __init__(
        self,
        ctx: WorkerContext[Any],
        service: str,
        endpoints: Sequence[Endpoint],
        *,
        description: str = "",
        concurrency: int = 8,
    ) -> None:
        self._ctx, self._service, self._endpoints = ctx, service, endpoints
        self._description = description or service
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``; questions already taken are answered before it returns."""
        served = await add_service(
            self._ctx.nc, name=self._service, version="1.0.0", description=self._description
        )
        for endpoint in self._endpoints:
            handler = functools.partial(self._take, endpoint)
            await served.add_endpoint(name=endpoint.name, subject=endpoint.subject, handler=handler)
        log.info("rpc_serving", service=self._service, endpoints=[e.name for e in self._endpoints])
        try:
            await stop.wait()
        finally:
            await served.stop()
            if self._running:
                await asyncio.wait(set(self._running))

    async def _take(self, endpoint: Endpoint, request: Request) -> None:
        await self._slots.acquire()  # full: this subscription waits for a free slot
        task = asyncio.create_task(self._answer(endpoint, request))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _answer(self, endpoint: Endpoint, request: Request) -> None:
        try:
            await self._respond(endpoint, request)
        except Exception:  # the bus went away mid-answer: the asker times out
            log.warning("rpc_answer_lost", endpoint=endpoint.name, exc_info=True)

    async def _respond(self, endpoint: Endpoint, request: Request) -> None:
        try:
            question = endpoint.request.model_validate_json(request.data)
        except ValidationError as exc:
            await request.respond_error("400", f"bad request: {exc.error_count()} errors")
            return
        try:
            async with self._ctx.db.transaction() as session:
                reply = await endpoint.handler(session, question)
        except Exception:
            log.exception("rpc_failed", endpoint=endpoint.name)
            await request.respond_error("500", "the request failed; nothing changed")
            return
        await request.respond(reply.model_dump_json().encode())


async def serve_rpc(
    ctx: WorkerContext[Any],
    *,
    service: str,
    endpoints: Sequence[Endpoint],
    description: str = "",
    concurrency: int = 8,
) -> None:
    """A worker task: serve ``endpoints`` as the NATS micro service ``service`` until the
    worker stops."""
    server = RpcServer(ctx, service, endpoints, description=description, concurrency=concurrency)
    await server.run(ctx.stop)


async def ask(
    nc: NatsClient | None,
    subject: str,
    question: BaseModel,
    answer: type[AnswerT],
    *,
    within: float = 2.0,
) -> AnswerT:
    """Ask and wait for the answer; ``Unreachable`` when there is none in time.

    While nobody serves ``subject`` (its service is restarting, or rolling to a new
    version), the question is asked again after a short pause, until ``within`` is over.
    """
    if nc is None or not nc.is_connected:
        raise Unreachable("the message bus is not connected")
    data = question.model_dump_json().encode()
    deadline = time.monotonic() + within
    pause = NO_RESPONDERS_FIRST_PAUSE
    while True:
        remaining = deadline - time.monotonic()
        try:
            reply = await nc.request(subject, data, timeout=remaining)
            break
        except NoRespondersError as exc:
            if remaining <= pause:
                raise Unreachable(f"no answer on {subject}: {type(exc).__name__}") from exc
            log.info("rpc_no_responders", subject=subject, retry_in=pause)
        except (NatsTimeout, NatsError) as exc:
            raise Unreachable(f"no answer on {subject}: {type(exc).__name__}") from exc
        await asyncio.sleep(pause)
        pause = min(pause * 2, NO_RESPONDERS_LAST_PAUSE)
    if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
        code = reply.headers.get("Nats-Service-Error-Code")
        raise Unreachable(f"{subject} failed ({code}): {reply.headers.get('Nats-Service-Error')}")
    return answer.model_validate_json(reply.data)
