"""Jobs sent to tenants' workflows: the worker loop every service that dispatches shares.

A pass (``Sender.pass_once``) claims due jobs in one transaction (the service marks them
in flight and reads what each needs to go out: a ``Dispatch``), sends them concurrently
once that has committed, and records each outcome in a transaction of its own: ``sent``
after a 2xx, ``failed`` with the ``DispatchFailed`` otherwise. Anything else a send
raises (a bug) is recorded as a retryable failure: unrecorded, the job would sit
mid-dispatch until the sweeper queued it again, and go out for ever without counting an
attempt. An outcome that cannot be recorded is logged and keeps no other job's
unrecorded; the sweeper puts that job back in the queue.

What is claimed, how an outcome is recorded and when to give up are the service's
(``retry_delay`` is the backoff they share), as are the jobs' states.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Protocol

import httpx
import structlog
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.db import Database
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import CircuitOpen, DispatchFailed, WebhookDispatcher, backoff_delay
from bai_platform.worker import WorkerContext, every

log = structlog.get_logger("bai.dispatching")


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What a claimed job needs to go out, read while its row was locked."""

    job_id: str  # also the event id: workflows dedupe our retries by it
    url: str
    secret: str
    secret_header: bool
    payload: dict[str, Any]


Claim = Callable[[AsyncSession], Awaitable[Sequence[Dispatch]]]


class Sent(Protocol):
    def __call__(self, session: AsyncSession, /, *, job_id: str) -> Awaitable[None]: ...


class Failed(Protocol):
    def __call__(
        self, session: AsyncSession, /, *, job_id: str, failure: DispatchFailed
    ) -> Awaitable[None]: ...


class Recover(Protocol):
    def __call__(self, session: AsyncSession, /, *, older_than: timedelta) -> Awaitable[int]: ...


def unexpected(exc: Exception) -> str:
    """What a job whose send crashed is told, unless the service says otherwise."""
    return f"dispatch failed unexpectedly: {exc!r}"[:300]


@dataclass(frozen=True, slots=True)
class Sender:
    """Claim, send, record: one pass of a dispatching worker (see the module docstring)."""

    db: Database
    dispatcher: WebhookDispatcher
    claim: Claim
    sent: Sent
    failed: Failed
    crash_message: Callable[[Exception], str] = unexpected

    async def pass_once(self) -> None:
        async with self.db.transaction() as session:
            claimed = await self.claim(session)
        results = await asyncio.gather(*(self._send(d) for d in claimed), return_exceptions=True)
        for job, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("dispatch_unrecorded", job_id=job.job_id, exc_info=result)

    async def _send(self, job: Dispatch) -> None:
        failure = await self._failure_of(job)
        async with self.db.transaction() as session:
            if failure is None:
                await self.sent(session, job_id=job.job_id)
            else:
                await self.failed(session, job_id=job.job_id, failure=failure)

    async def _failure_of(self, job: Dispatch) -> DispatchFailed | None:
        try:
            await self.dispatcher.dispatch(
                url=job.url,
                payload=job.payload,
                secret=job.secret,
                secret_header=job.secret_header,
                event_id=job.job_id,
            )
        except DispatchFailed as failure:
            return failure
        except Exception as exc:  # a bug must not leave the job mid-dispatch forever
            log.exception("dispatch_crashed", job_id=job.job_id)
            return DispatchFailed(self.crash_message(exc), retryable=True)
        return None


def retry_delay(
    failure: DispatchFailed, *, attempts: int, max_attempts: int, backoff: tuple[float, float]
) -> timedelta | None:
    """How long until a failed job is tried again; None when it should fail for good.

    Only a retryable failure with attempts left is tried again, after ``backoff_delay``
    (base, cap) and never before an open circuit breaker lets a call through: an earlier
    try would only meet it again.
    """
    if not failure.retryable or attempts >= max_attempts:
        return None
    delay = backoff_delay(attempts, base=backoff[0], cap=backoff[1])
    if isinstance(failure, CircuitOpen):
        delay = max(delay, failure.retry_after_seconds)
    return timedelta(seconds=delay)


def not_taken(failure: DispatchFailed, *, attempts: int) -> str:
    """Why a job failed for good: the workflow never took it."""
    tries = f"after {attempts} attempt{'s' if attempts > 1 else ''}"
    return f"the workflow did not take the job {tries}: {failure}"


@dataclass(frozen=True, slots=True)
class DispatchLoop:
    """How often a worker dispatches, and how its dispatcher treats the endpoints."""

    every_seconds: float
    timeout_seconds: float
    failure_threshold: int = 5
    open_seconds: float = 30.0
    allow_private: bool = False


async def dispatch_every(
    stop: asyncio.Event,
    loop: DispatchLoop,
    one_pass: Callable[[WebhookDispatcher], Awaitable[object]],
    *,
    name: str,
) -> None:
    """Run ``one_pass`` every ``loop.every_seconds`` until ``stop``, with a dispatcher (and
    an HTTP client dedicated to webhooks) of its own."""
    async with httpx.AsyncClient() as client:
        dispatcher = WebhookDispatcher(
            client=client,
            timeout_seconds=loop.timeout_seconds,
            failure_threshold=loop.failure_threshold,
            open_seconds=loop.open_seconds,
            allow_private=loop.allow_private,
        )
        await every(stop, loop.every_seconds, partial(one_pass, dispatcher), name=name)


class DispatchSettings(ServiceSettings):
    """Settings of a service that dispatches jobs to n8n workflows."""

    # How often queued jobs are looked for, how often a dispatch is tried, and the backoff
    # between tries (exponential, full jitter).
    dispatch_poll_seconds: float = Field(default=0.5, gt=0)
    dispatch_max_attempts: int = Field(default=5, ge=1)
    dispatch_backoff_base_seconds: float = Field(default=2.0, gt=0)
    dispatch_backoff_cap_seconds: float = Field(default=120.0, gt=0)
    # The overall deadline of one dispatch, from resolving the workflow's name to the last
    # byte of its answer: a workflow dripping bytes cannot hold a pass any longer.
    dispatch_timeout_seconds: float = Field(default=10.0, gt=0)
    # Consecutive failures that open an endpoint's circuit breaker, and for how long.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    # How often dispatched jobs past their deadline are ended.
    sweep_seconds: float = Field(default=5.0, gt=0)

    @property
    def dispatch_loop(self) -> DispatchLoop:
        return DispatchLoop(
            every_seconds=self.dispatch_poll_seconds,
            timeout_seconds=self.dispatch_timeout_seconds,
            failure_threshold=self.breaker_failures,
            open_seconds=self.breaker_open_seconds,
            allow_private=self.allow_private_destinations,
        )

    @property
    def dispatch_backoff(self) -> tuple[float, float]:
        return (self.dispatch_backoff_base_seconds, self.dispatch_backoff_cap_seconds)


async def sweep_deadlines(
    ctx: WorkerContext[DispatchSettings],
    *,
    recover_stuck: Recover,
    expire_overdue: Callable[[AsyncSession], Awaitable[int]],
) -> None:
    """A worker task: every ``sweep_seconds``, in one transaction, jobs a dead worker left
    mid-dispatch (for three dispatch timeouts) go back to be sent, then overdue ones end."""
    stuck_after = timedelta(seconds=ctx.settings.dispatch_timeout_seconds * 3)

    async def sweep() -> None:
        async with ctx.db.transaction() as session:
            await recover_stuck(session, older_than=stuck_after)
            await expire_overdue(session)

    await every(ctx.stop, ctx.settings.sweep_seconds, sweep, name="deadline-sweeper")
