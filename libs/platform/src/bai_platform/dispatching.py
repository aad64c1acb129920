"""Jobs sent to tenants' workflows: the worker loop every service that dispatches shares.

A pass (``Sender.pass_once``) claims due jobs in one transaction (the service marks them
in flight and reads what each needs to go out: a ``Dispatch``), sends them concurrently
once that has committed, and records each outcome in a transaction of its own: ``sent``
after a 2xx, ``failed`` with the ``DispatchFailed`` otherwise. Anything else a send
raises (a bug) is recorded as a retryable failure: unrecorded, the job would sit
mid-dispatch until the sweeper queued it again, and go out for ever without counting an
attempt. An outcome that cannot be recorded is logged and keeps no other job's
unrecorded; the sweeper puts that job back in the queue.

Which jobs are due, what each sends and how a job ends are the service's, one
``DispatchedJobs`` per kind of job; the rest is the same for every kind and lives here:
``JobTable`` holds what every table of dispatched jobs shares (the claim, a job in flight
recorded sent or tried again with ``retry_delay``'s backoff, a job a dead worker left
mid-dispatch sent again, an overdue one ended, the signer of its callbacks), and
``dispatching_tasks`` are the worker tasks that send the jobs (``dispatch_jobs``), sweep
their deadlines (``sweep_deadlines``) and take their callbacks (``bai_platform.callbacks``).
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import httpx
import structlog
from cryptography.fernet import Fernet
from pydantic import Field
from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from bai_platform.callbacks import JobSigner, serve_callbacks, signer_of
from bai_platform.db import Database
from bai_platform.secrets import read_secret
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import CircuitOpen, DispatchFailed, WebhookDispatcher, backoff_delay
from bai_platform.worker import WorkerContext, WorkerTask, every

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


# ---- one kind of dispatched job ----------------------------------------------------------
class DispatchedJobs(Protocol):
    """One kind of job a service sends to its tenants' workflows: all the platform's tasks
    need of it. The steps before and after a pass (``before_pass``, ``after_pass``) run in
    the dispatching task, around the send; ``crash_message`` words a send that crashed."""

    async def claim(self, session: AsyncSession, *, limit: int) -> Sequence[Dispatch]: ...

    async def record_dispatched(self, session: AsyncSession, *, job_id: str) -> None: ...

    async def record_failure(
        self, session: AsyncSession, *, job_id: str, failure: DispatchFailed
    ) -> None: ...

    async def recover_stuck(self, session: AsyncSession, *, older_than: timedelta) -> int: ...

    async def expire_overdue(self, session: AsyncSession) -> int: ...

    async def signer_for(self, session: AsyncSession, job_id: str) -> JobSigner | None: ...

    async def before_pass(self, ctx: WorkerContext[Any]) -> None: ...

    async def after_pass(self, ctx: WorkerContext[Any]) -> None: ...

    def crash_message(self, exc: Exception) -> str: ...


JobT = TypeVar("JobT", bound=SQLModel)


def _now() -> datetime:
    return datetime.now(UTC)


async def locked_job(session: AsyncSession, model: type[JobT], job_id: str) -> JobT | None:
    """The job, locked and read afresh; None when there is no such job."""
    return await session.get(model, job_id, with_for_update=True, populate_existing=True)


@dataclass(frozen=True, kw_only=True)
class JobTable(ABC, Generic[JobT]):
    """A ``DispatchedJobs`` over one table of jobs: all but what is the service's.

    The table (``model``) has ``id``, ``tenant_id``, ``attempts``, ``next_attempt_at``,
    ``dispatched_at`` and ``deadline_at``, and one column (``progress``) saying how far a
    job's dispatch went: ``queued`` (to send at ``next_attempt_at``), ``sending`` (claimed,
    in flight) or ``sent`` (the workflow took it; its callbacks count until
    ``deadline_at``). ``scope`` is what else a job of this kind in dispatch is (an n8n job,
    a running job). The tenant's workflow is a row of ``workflow_model`` keyed by
    ``tenant_id``, its secret encrypted with ``box``.

    The service's subclass finds the due jobs (``due``) and what each sends
    (``dispatch_of``, most often through ``send_to``), says how long a job the workflow
    took may take (``deadline``) and how a job ends that cannot go out (``refuse``) or was
    not done in time (``time_out``); ``note_failure`` may keep each failed try's reason on
    the job, and ``signs`` says which jobs a workflow was given.
    """

    model: ClassVar[type[Any]]
    workflow_model: ClassVar[type[Any]]
    progress: ClassVar[str]
    queued: ClassVar[str]
    sending: ClassVar[str]
    sent: ClassVar[str]
    scope: ClassVar[tuple[ColumnElement[bool], ...]] = ()
    unreadable_secret: ClassVar[str]

    box: Fernet
    callback_base: str
    max_attempts: int
    backoff: tuple[float, float]

    @classmethod
    def of(cls, settings: DispatchSettings, box: Fernet, **more: Any) -> Self:
        """The jobs as the worker sends them, with ``settings`` (and ``more`` fields)."""
        return cls(
            box=box,
            callback_base=settings.public_base_url,
            max_attempts=settings.dispatch_max_attempts,
            backoff=settings.dispatch_backoff,
            **more,
        )

    # ---- the service's -------------------------------------------------------------------
    @abstractmethod
    async def due(self, session: AsyncSession, *, limit: int) -> Sequence[JobT]:
        """Queued jobs whose turn has come, locked (``FOR UPDATE SKIP LOCKED``)."""

    @abstractmethod
    async def dispatch_of(self, session: AsyncSession, job: JobT) -> Dispatch | None:
        """What a due job sends, the job marked in flight; None when it cannot go out."""

    @abstractmethod
    async def deadline(self, session: AsyncSession, job: JobT) -> timedelta: ...

    @abstractmethod
    async def refuse(self, session: AsyncSession, job: JobT, reason: str) -> None:
        """End a job that cannot go out, saying why."""

    @abstractmethod
    async def time_out(self, session: AsyncSession, job: JobT) -> None:
        """The workflow took the job but did not finish it by its deadline."""

    async def give_up(self, session: AsyncSession, job: JobT, failure: DispatchFailed) -> None:
        """The workflow did not take the job, and trying again would not help."""
        await self.refuse(session, job, not_taken(failure, attempts=self._row(job).attempts))

    def note_failure(self, job: JobT, failure: DispatchFailed) -> None:
        """Keep a failed try's reason on the job (nothing, unless the service says so)."""

    def signs(self, job: JobT) -> bool:
        """Whether a workflow was given the job (every job, unless the service says)."""
        return True

    async def before_pass(self, ctx: WorkerContext[Any]) -> None:
        """What the dispatching task does before claiming (nothing, unless the service says)."""

    async def after_pass(self, ctx: WorkerContext[Any]) -> None:
        """What the dispatching task does after recording (nothing, unless the service says)."""

    def crash_message(self, exc: Exception) -> str:
        return unexpected(exc)

    # ---- the same for every table ------------------------------------------------------
    async def claim(self, session: AsyncSession, *, limit: int = 20) -> list[Dispatch]:
        """Take due jobs; they go out after this transaction commits."""
        claimed = []
        for job in await self.due(session, limit=limit):
            dispatch = await self.dispatch_of(session, job)
            if dispatch is not None:
                claimed.append(dispatch)
        await session.flush()
        return claimed

    async def send_to(
        self, session: AsyncSession, job: JobT, workflow: Any, *, payload: dict[str, Any]
    ) -> Dispatch | None:
        """What ``job`` sends to the tenant's ``workflow`` (its ``webhook_url``), the job
        marked in flight (one attempt more); None when the workflow's secret cannot be
        read, and the job refused saying so."""
        secret = read_secret(self.box, workflow.secret)
        if secret is None:
            await self.refuse(session, job, self.unreadable_secret)
            return None
        row = self._row(job)
        setattr(row, self.progress, self.sending)
        row.attempts, row.next_attempt_at = row.attempts + 1, _now()
        return Dispatch(
            job_id=row.id,
            url=workflow.webhook_url,
            secret=secret,
            secret_header=workflow.accept_secret_header,
            payload=payload,
        )

    async def workflow_of(self, session: AsyncSession, job: JobT) -> Any:
        """The job's tenant's workflow; None when it has none."""
        return await session.get(self.workflow_model, self._row(job).tenant_id)

    async def signer_for(self, session: AsyncSession, job_id: str) -> JobSigner | None:
        """How callbacks of ``job_id`` verify: its tenant's workflow secret (None: no such
        job, or none a workflow was given)."""
        job = await session.get(self.model, job_id)
        if job is None or not self.signs(job):
            return None
        return signer_of(job.tenant_id, await self.workflow_of(session, job), box=self.box)

    async def record_dispatched(self, session: AsyncSession, *, job_id: str) -> None:
        """The workflow took the job: wait for its callbacks until its deadline."""
        job = await self._in_flight(session, job_id)
        if job is not None:  # else a callback came first, or the job ended meanwhile
            await self.taken(session, job)

    async def taken(self, session: AsyncSession, job: JobT) -> None:
        """Mark the job sent, its deadline counted from now."""
        deadline = await self.deadline(session, job)
        row = self._row(job)
        setattr(row, self.progress, self.sent)
        row.dispatched_at = _now()
        row.deadline_at = row.dispatched_at + deadline

    async def record_failure(
        self, session: AsyncSession, *, job_id: str, failure: DispatchFailed
    ) -> None:
        """Try again later when that may help (``retry_delay``); otherwise ``give_up``."""
        job = await self._in_flight(session, job_id)
        if job is None:
            return
        self.note_failure(job, failure)
        row = self._row(job)
        delay = retry_delay(
            failure, attempts=row.attempts, max_attempts=self.max_attempts, backoff=self.backoff
        )
        if delay is not None:
            setattr(row, self.progress, self.queued)
            row.next_attempt_at = _now() + delay
            return
        await self.give_up(session, job, failure)

    async def recover_stuck(self, session: AsyncSession, *, older_than: timedelta) -> int:
        """Jobs a dead worker left mid-dispatch go back to be sent (workflows dedupe by id)."""
        query = (
            select(self.model)
            .where(
                self._column(self.progress) == self.sending,
                *self.scope,
                self._column("next_attempt_at") < _now() - older_than,
            )
            .with_for_update(skip_locked=True)
        )
        jobs = list((await session.scalars(query)).all())
        for job in jobs:
            setattr(job, self.progress, self.queued)
        return len(jobs)

    async def expire_overdue(self, session: AsyncSession, *, limit: int = 100) -> int:
        """End jobs the workflow took but did not finish by their deadline (``time_out``)."""
        query = (
            select(self.model)
            .where(
                self._column(self.progress) == self.sent,
                *self.scope,
                self._column("deadline_at") < _now(),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        jobs = list((await session.scalars(query)).all())
        for job in jobs:
            await self.time_out(session, job)
        return len(jobs)

    async def _in_flight(self, session: AsyncSession, job_id: str) -> JobT | None:
        """The job, locked, while it is being sent."""
        query = (
            select(self.model)
            .where(self._column("id") == job_id, self._column(self.progress) == self.sending)
            .where(*self.scope)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        job: JobT | None = (await session.scalars(query)).first()
        return job

    def _column(self, name: str) -> Any:
        return getattr(self.model, name)

    @staticmethod
    def _row(job: JobT) -> Any:
        """The job's columns, read and written by name (the tables differ in their types)."""
        return job


# ---- the worker tasks --------------------------------------------------------------------
CLAIM_BATCH = 20


async def dispatch_pass(
    ctx: WorkerContext[Any], dispatcher: WebhookDispatcher, *, jobs: DispatchedJobs
) -> None:
    """One pass: the steps before, claim and send (``Sender``), the steps after."""
    await jobs.before_pass(ctx)
    sender = Sender(
        db=ctx.db,
        dispatcher=dispatcher,
        claim=partial(jobs.claim, limit=CLAIM_BATCH),
        sent=jobs.record_dispatched,
        failed=jobs.record_failure,
        crash_message=jobs.crash_message,
    )
    await sender.pass_once()
    await jobs.after_pass(ctx)


async def dispatch_jobs(
    ctx: WorkerContext[DispatchSettings], *, jobs: DispatchedJobs, name: str = "n8n"
) -> None:
    """A worker task: a ``dispatch_pass`` every ``dispatch_poll_seconds`` until it stops."""
    one_pass = partial(dispatch_pass, ctx, jobs=jobs)
    await dispatch_every(ctx.stop, ctx.settings.dispatch_loop, one_pass, name=name)


def dispatching_tasks(
    jobs: DispatchedJobs, *, outbox: Table, name: str = "n8n", sweep: bool = True
) -> list[WorkerTask]:
    """The worker tasks of one kind of job: send them, take their callbacks, and (unless the
    service sweeps them its own way) sweep their deadlines."""
    tasks: list[WorkerTask] = [
        partial(dispatch_jobs, jobs=jobs, name=name),
        partial(serve_callbacks, lookup=jobs.signer_for, outbox=outbox),
    ]
    if sweep:
        tasks.append(
            partial(
                sweep_deadlines,
                recover_stuck=jobs.recover_stuck,
                expire_overdue=jobs.expire_overdue,
            )
        )
    return tasks
