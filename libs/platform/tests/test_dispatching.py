"""One pass of a dispatching worker: claimed jobs go out after the claim commits, and each
outcome is recorded, a crash as a retryable failure.

The jobs go to a stand-in workflow (a real HTTP server on 127.0.0.1); claiming and
recording are the test's own functions, run in real transactions of a sandbox schema.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.dispatching import Dispatch, Sender, not_taken, retry_delay
from bai_platform.webhooks import CircuitOpen, DispatchFailed, WebhookDispatcher
from bai_testing.workflows import Workflow, workflow_server

from .conftest import Sandbox

SECRET = "tenant-workflow-signing-secret"


@dataclass
class Jobs:
    """The service's side: what is claimed, and the outcomes recorded."""

    sandbox: Sandbox
    due: list[Dispatch] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, DispatchFailed]] = field(default_factory=list)
    unrecordable: set[str] = field(default_factory=set)

    def add(self, workflow: Workflow, job_id: str) -> None:
        self.due.append(Dispatch(job_id, workflow.url, SECRET, False, {"job_id": job_id}))

    async def claim(self, session: AsyncSession) -> Sequence[Dispatch]:
        claimed, self.due = self.due, []
        for job in claimed:  # what a service marks in flight
            await session.execute(self.sandbox.effects.insert().values(event_id=job.job_id))
        return claimed

    async def record_sent(self, session: AsyncSession, *, job_id: str) -> None:
        assert session.in_transaction()
        if job_id in self.unrecordable:
            raise RuntimeError("the database went away")
        self.sent.append(job_id)

    async def record_failed(
        self, session: AsyncSession, *, job_id: str, failure: DispatchFailed
    ) -> None:
        assert session.in_transaction()
        self.failed.append((job_id, failure))


async def _crash(request: httpx.Request) -> None:
    raise RuntimeError("a bug in the dispatcher")


@pytest.fixture
async def workflow() -> AsyncIterator[Workflow]:
    async with workflow_server() as stand_in:
        yield stand_in


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def crashing() -> AsyncIterator[httpx.AsyncClient]:
    """A client that raises what no dispatcher expects (a bug)."""
    async with httpx.AsyncClient(event_hooks={"request": [_crash]}) as client:
        yield client


@pytest.fixture
def jobs(sandbox: Sandbox) -> Jobs:
    return Jobs(sandbox)


def sender(jobs: Jobs, dispatcher: WebhookDispatcher, **options: Any) -> Sender:
    return Sender(
        db=jobs.sandbox.db,
        dispatcher=dispatcher,
        claim=jobs.claim,
        sent=jobs.record_sent,
        failed=jobs.record_failed,
        **options,
    )


def dispatcher(http: httpx.AsyncClient) -> WebhookDispatcher:
    return WebhookDispatcher(client=http, allow_private=True)  # the workflow is on 127.0.0.1


async def test_a_job_the_workflow_takes_is_recorded_as_sent(
    jobs: Jobs, workflow: Workflow, http: httpx.AsyncClient
) -> None:
    jobs.add(workflow, "job_taken")

    await sender(jobs, dispatcher(http)).pass_once()

    assert (jobs.sent, jobs.failed) == (["job_taken"], [])
    [got] = workflow.received
    assert (got.json(), got.headers["x-bai-event-id"]) == ({"job_id": "job_taken"}, "job_taken")


async def test_jobs_go_out_only_once_their_claim_has_committed(
    jobs: Jobs, workflow: Workflow
) -> None:
    jobs.add(workflow, "job_one")
    jobs.add(workflow, "job_two")
    effects = jobs.sandbox.effects
    claims_seen: list[str | None] = []

    async def witness(request: httpx.Request) -> None:  # from another connection
        async with jobs.sandbox.db.transaction() as session:
            query = select(effects.c.event_id).where(
                effects.c.event_id == request.headers["x-bai-event-id"]
            )
            claims_seen.append(await session.scalar(query))

    async with httpx.AsyncClient(event_hooks={"request": [witness]}) as http:
        await sender(jobs, dispatcher(http)).pass_once()

    assert sorted(str(seen) for seen in claims_seen) == ["job_one", "job_two"]
    assert sorted(jobs.sent) == ["job_one", "job_two"]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (404, False)])
async def test_a_job_the_workflow_does_not_take_is_recorded_with_the_failure(
    jobs: Jobs, workflow: Workflow, http: httpx.AsyncClient, status: int, retryable: bool
) -> None:
    workflow.status = status
    jobs.add(workflow, "job_refused")

    await sender(jobs, dispatcher(http)).pass_once()

    [(job_id, failure)] = jobs.failed
    assert (job_id, failure.status_code, failure.retryable) == ("job_refused", status, retryable)
    assert jobs.sent == []


async def test_an_unexpected_exception_is_recorded_as_a_retryable_failure(
    jobs: Jobs, workflow: Workflow, crashing: httpx.AsyncClient
) -> None:
    jobs.add(workflow, "job_crashed")

    await sender(jobs, dispatcher(crashing)).pass_once()

    [(job_id, failure)] = jobs.failed
    assert (job_id, failure.retryable) == ("job_crashed", True)
    assert str(failure) == "dispatch failed unexpectedly: RuntimeError('a bug in the dispatcher')"


async def test_the_service_may_word_a_crash_for_its_tenants(
    jobs: Jobs, workflow: Workflow, crashing: httpx.AsyncClient
) -> None:
    jobs.add(workflow, "job_crashed")
    worded = sender(jobs, dispatcher(crashing), crash_message=lambda _: "internal error")

    await worded.pass_once()

    [(_, failure)] = jobs.failed
    assert (str(failure), failure.retryable) == ("internal error", True)


async def test_an_outcome_that_cannot_be_recorded_keeps_no_other_unrecorded(
    jobs: Jobs, workflow: Workflow, http: httpx.AsyncClient
) -> None:
    jobs.add(workflow, "job_lost")
    jobs.add(workflow, "job_kept")
    jobs.unrecordable.add("job_lost")

    await sender(jobs, dispatcher(http)).pass_once()

    assert jobs.sent == ["job_kept"]


# ---- when to try again ---------------------------------------------------------------------
def test_a_retryable_failure_with_attempts_left_is_tried_again_within_the_backoff() -> None:
    failure = DispatchFailed("n8n answered 503", retryable=True)

    delay = retry_delay(failure, attempts=3, max_attempts=5, backoff=(2.0, 5.0))

    assert delay is not None
    assert 0 <= delay.total_seconds() <= 5.0


@pytest.mark.parametrize(
    ("failure", "attempts"),
    [
        (DispatchFailed("n8n answered 404", retryable=False), 1),
        (DispatchFailed("n8n answered 503", retryable=True), 5),
    ],
)
def test_a_refusal_or_the_last_attempt_is_not_tried_again(
    failure: DispatchFailed, attempts: int
) -> None:
    assert retry_delay(failure, attempts=attempts, max_attempts=5, backoff=(2.0, 120.0)) is None


def test_an_open_circuit_puts_the_retry_off_until_it_may_close() -> None:
    failure = CircuitOpen("paused", retry_after_seconds=600)

    delay = retry_delay(failure, attempts=1, max_attempts=5, backoff=(2.0, 120.0))

    assert delay is not None
    assert delay.total_seconds() >= 600


def test_a_job_that_fails_for_good_says_after_how_many_attempts() -> None:
    failure = DispatchFailed("n8n answered 404", retryable=False)

    assert not_taken(failure, attempts=1) == (
        "the workflow did not take the job after 1 attempt: n8n answered 404"
    )
    assert "after 3 attempts:" in not_taken(failure, attempts=3)


async def test_a_dripping_workflow_is_recorded_as_a_retryable_failure_by_its_deadline(
    jobs: Jobs, workflow: Workflow, dripping: str, http: httpx.AsyncClient
) -> None:
    jobs.add(workflow, "job_of_a_fair_tenant")
    jobs.due.append(Dispatch("job_dripped", dripping, SECRET, False, {"job_id": "job_dripped"}))
    deadline = WebhookDispatcher(client=http, allow_private=True, timeout_seconds=1)

    async with asyncio.timeout(20):  # a failure of the test, not a hang
        await sender(jobs, deadline).pass_once()

    assert jobs.sent == ["job_of_a_fair_tenant"]
    [(job_id, failure)] = jobs.failed
    assert (job_id, failure.retryable) == ("job_dripped", True)
    assert "within 1 s" in failure.message
