"""The n8n engine: a workspace's requests become jobs dispatched, signed, to its workflow;
the workflow's signed callback completes or fails them (see ``creator.service.engines.n8n``).

A real HTTP server on 127.0.0.1 (``bai_testing.workflows``) stands in for each
test's workflow. The sender is called one pass at a time and the sweeper's steps directly,
so nothing depends on timing. The database is shared by the whole session and a pass looks
at every tenant's queued jobs, so assertions only look at the test's own tenant and jobs
(what reached a workflow is matched by ``X-BAI-Event-Id``, the job's id).
"""

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.fernet import Fernet
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, update
from sqlmodel import col

from bai_contracts import (
    BrandVoice,
    CallbackReceived,
    ContentFailed,
    ContentGenerated,
    PostGenerationRequested,
    callback_subject,
)
from bai_platform.db import Database
from bai_platform.dispatching import dispatch_pass
from bai_platform.envelope import Envelope, new_event
from bai_platform.messaging import connect
from bai_platform.webhooks import Delivered, WebhookDispatcher, verify_signature
from bai_platform.worker import WorkerContext
from bai_testing.workflows import Dispatched, Workflow, workflow_server
from creator.events import on_generation_requested, on_workflow_callback
from creator.models import ContentVersion, EngineSettings, GenerationJob, outbox
from creator.service.engines import n8n
from creator.settings import CreatorSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]

ENGINE_URL = "/v1/creator/engine"
SECRET = "n8n-creator-secret-0123456789"
DEADLINE_SECONDS = 900
TEXT = "The winter blend is here: dark, smooth and warming. Come taste it this week."
DID_NOT_CALL_BACK = "the workflow did not call back in time"


# ---- the workspace, its requests and its jobs -------------------------------------------
def request(post_id: UUID | None = None, channel: str = "x") -> PostGenerationRequested:
    return PostGenerationRequested(
        request_id=uuid4(),
        post_id=post_id or uuid4(),
        campaign_id=uuid4(),
        brand_id=uuid4(),
        channel=channel,
        scheduled_at=datetime(2026, 12, 2, 9, tzinfo=UTC),
        campaign_name="December push",
        brief="Launch the winter blend.",
        goal="Sell 500 bags before Christmas",
        brand_name="Acme Coffee",
        voice=BrandVoice(tone="warm", keywords=["coffee"], language="en"),
        note="Mention the tasting on Saturday",
    )


UseEngine = Callable[..., Awaitable[None]]


@pytest.fixture
def use_engine(private_client: httpx.AsyncClient, identity_for: IdentityFor) -> UseEngine:
    """The workspace's owner chooses an engine (n8n at ``url`` unless told otherwise)."""

    async def put(tenant_id: UUID, url: str = "", **body: Any) -> None:
        if url:
            body = {
                "type": "n8n",
                "webhook_url": url,
                "secret": SECRET,
                "deadline_seconds": DEADLINE_SECONDS,
            } | body
        response = await private_client.put(
            ENGINE_URL, json=body, headers=identity_for(tenant_id, "owner")
        )
        assert response.status_code == 200, response.text

    return put


@pytest.fixture(autouse=True)
async def _end_the_tests_jobs(creator_db: Database, tenant: UUID) -> AsyncIterator[None]:
    """A job the test left waiting is ended, so later tests' passes do not send it."""
    yield
    async with creator_db.transaction() as session:
        await session.execute(
            update(GenerationJob)
            .where(col(GenerationJob.tenant_id) == tenant, col(GenerationJob.state).in_(n8n.ACTIVE))
            .values(state="failed", error="ended by the test")
        )


@pytest.fixture
async def workflow() -> AsyncIterator[Workflow]:
    async with workflow_server() as serving:
        yield serving


def sent_for(workflow: Workflow, job_id: str) -> list[Dispatched]:
    """What reached the workflow for this job (other tests' jobs may reach a reused port)."""
    return [d for d in workflow.received if d.headers.get("x-bai-event-id") == job_id]


async def ask(
    creator_db: Database, tenant_id: UUID, asked: PostGenerationRequested, *, held: bool = True
) -> None:
    """The planner's request, handled as the worker's consumer would; with ``held``,
    billing has then held the job's credit (as the credits saga records it)."""
    envelope = new_event(asked, source="planner", tenant_id=tenant_id, subject=str(asked.post_id))
    async with creator_db.transaction() as session:
        await on_generation_requested(session, envelope)
    if held:
        await hold_credit(creator_db, asked.post_id)


async def hold_credit(creator_db: Database, post_id: UUID) -> None:
    """Billing answered the reservation of the post's queued jobs."""
    async with creator_db.transaction() as session:
        await session.execute(
            update(GenerationJob)
            .where(col(GenerationJob.post_id) == post_id, col(GenerationJob.credits) == "none")
            .values(credits="reserved")
        )


async def jobs_of(creator_db: Database, post_id: UUID) -> list[GenerationJob]:
    async with creator_db.transaction() as session:
        query = select(GenerationJob).where(col(GenerationJob.post_id) == post_id)
        return list((await session.scalars(query.order_by(col(GenerationJob.created_at)))).all())


async def job_of(creator_db: Database, post_id: UUID) -> GenerationJob:
    [job] = await jobs_of(creator_db, post_id)
    return job


async def change_job(creator_db: Database, job_id: str, **values: Any) -> None:
    async with creator_db.transaction() as session:
        await session.execute(
            update(GenerationJob).where(col(GenerationJob.id) == job_id).values(values)
        )


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


async def retry_now(creator_db: Database, job_id: str) -> None:
    """The job's backoff is over."""
    await change_job(creator_db, job_id, next_attempt_at=ago(seconds=1))


async def pass_deadline(creator_db: Database, job_id: str) -> None:
    """The job's deadline for a callback is over."""
    await change_job(creator_db, job_id, deadline_at=ago(seconds=1))


async def leave_mid_dispatch(creator_db: Database, job_id: str, *, since: datetime) -> None:
    """A worker claimed the job at ``since`` and died before recording what came of it."""
    await change_job(creator_db, job_id, state="dispatching", next_attempt_at=since)


async def versions_of(creator_db: Database, post_id: UUID) -> list[ContentVersion]:
    async with creator_db.transaction() as session:
        query = select(ContentVersion).where(col(ContentVersion.post_id) == post_id)
        return list((await session.scalars(query.order_by(col(ContentVersion.version)))).all())


async def announced(creator_db: Database, job_id: str) -> list[Envelope]:
    async with creator_db.transaction() as session:
        rows = (await session.execute(select(outbox.c.payload))).all()
    envelopes = [Envelope.model_validate_json(row.payload) for row in rows]
    return [e for e in envelopes if e.subject == job_id]


async def generated(creator_db: Database, job_id: str) -> list[ContentGenerated]:
    return [
        e.payload(ContentGenerated)
        for e in await announced(creator_db, job_id)
        if e.type == ContentGenerated.subject
    ]


async def failures(creator_db: Database, job_id: str) -> list[ContentFailed]:
    return [
        e.payload(ContentFailed)
        for e in await announced(creator_db, job_id)
        if e.type == ContentFailed.subject
    ]


async def assert_no_content(creator_db: Database, job: GenerationJob) -> None:
    """The job's post got no version and no content was announced for the job."""
    assert await versions_of(creator_db, job.post_id) == []
    assert await generated(creator_db, job.id) == []


async def assert_dispatched_once(
    creator_db: Database, workflow: Workflow, job: GenerationJob
) -> None:
    """The job reached the workflow once, and waits for its callback."""
    assert len(sent_for(workflow, job.id)) == 1
    assert (await job_of(creator_db, job.post_id)).state == "dispatched"


async def assert_failed_for_good(
    creator_db: Database,
    workflow: Workflow,
    asked: PostGenerationRequested,
    *,
    attempts: int,
    reason: str,
) -> None:
    """The post's job reached the workflow ``attempts`` times, then failed for ``reason``,
    and its failure was announced."""
    job = await job_of(creator_db, asked.post_id)
    assert len(sent_for(workflow, job.id)) == attempts
    assert (job.state, job.attempts, job.error) == ("failed", attempts, reason)
    [failed] = await failures(creator_db, job.id)
    assert failed.error == reason


CallBack = Callable[..., Awaitable[None]]


@pytest.fixture
def call_back(creator_db: Database) -> CallBack:
    """A callback the gateway verified, handed to creator as its consumer would."""

    async def handle(tenant_id: UUID, job_id: str, **payload: Any) -> None:
        event = CallbackReceived(
            job_id=job_id, payload={"job_id": job_id, **payload}, verified_by="signature"
        )
        envelope = new_event(
            event,
            source="gateway",
            tenant_id=tenant_id,
            subject=job_id,
            event_type=callback_subject("creator"),
        )
        async with creator_db.transaction() as session:
            await on_workflow_callback(session, envelope)

    return handle


def content(text: str = TEXT, **more: Any) -> dict[str, Any]:
    return {"text": text, **more}


# ---- the sender, one pass at a time ------------------------------------------------------
@pytest.fixture(scope="module")
async def nats_client(creator_settings: CreatorSettings) -> AsyncIterator[NatsClient]:
    nc = await connect(creator_settings.nats_url, name="creator-n8n-tests")
    try:
        yield nc
    finally:
        await nc.drain()


class Calls:
    """Every request the senders' HTTP client made, to tell a call from no call."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def record(self, sent: httpx.Request) -> None:
        self.urls.append(str(sent.url))

    def to(self, url: str) -> int:
        return sum(1 for u in self.urls if u == url)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def http(calls: Calls) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(event_hooks={"request": [calls.record]}) as client:
        yield client


# One pass of the n8n worker task: claim queued jobs, send them, record the outcomes.
OnePass = Callable[[], Awaitable[None]]
SenderFor = Callable[..., OnePass]


@pytest.fixture
def sender_for(
    creator_settings: CreatorSettings,
    creator_db: Database,
    nats_client: NatsClient,
    engine_box: Fernet,
    http: httpx.AsyncClient,
) -> SenderFor:
    """A sender on the session's database; ``overrides`` change its settings.

    Its breaker never opens unless asked (``failure_threshold``): other tests' leftover jobs
    may go to the same host.
    """

    def build(
        *,
        failure_threshold: int = 1000,
        open_seconds: float = 30.0,
        dispatcher: WebhookDispatcher | None = None,
        **overrides: Any,
    ) -> OnePass:
        settings = creator_settings.model_copy(
            update={"dispatch_timeout_seconds": 5.0, **overrides}
        )
        ctx = WorkerContext(
            settings=settings, db=creator_db, nc=nats_client, js=nats_client.jetstream()
        )
        webhooks = dispatcher or WebhookDispatcher(
            client=http,
            timeout_seconds=settings.dispatch_timeout_seconds,
            failure_threshold=failure_threshold,
            open_seconds=open_seconds,
            allow_private=True,  # the stand-in workflow listens on 127.0.0.1
        )
        return partial(dispatch_pass, ctx, webhooks, jobs=n8n.N8nJobs.of(settings, engine_box))

    return build


@pytest.fixture
def sender(sender_for: SenderFor) -> OnePass:
    return sender_for()


# The sweep reads no secret and sends nothing: these jobs' box and settings are never used.
SWEPT = n8n.N8nJobs(
    box=Fernet(Fernet.generate_key()), callback_base="", max_attempts=1, backoff=(1.0, 1.0)
)


async def sweep(creator_db: Database, *, stuck_after: timedelta = timedelta(seconds=30)) -> None:
    """One pass of the worker's deadline sweeper."""
    async with creator_db.transaction() as session:
        await SWEPT.recover_stuck(session, older_than=stuck_after)
        await SWEPT.expire_overdue(session)


Queued = Callable[..., Awaitable[PostGenerationRequested]]


@pytest.fixture
def queued(creator_db: Database, tenant: UUID, workflow: Workflow, use_engine: UseEngine) -> Queued:
    """The test's workspace chooses n8n (at its ``workflow`` unless given another ``url``,
    with any more of ``engine``'s settings) and the planner asks for a post: its job waits
    in the queue, its credit held unless ``held`` is false."""

    async def make(
        asked: PostGenerationRequested | None = None,
        *,
        url: str = "",
        held: bool = True,
        **engine: Any,
    ) -> PostGenerationRequested:
        asked = asked or request()
        await use_engine(tenant, url or workflow.url, **engine)
        await ask(creator_db, tenant, asked, held=held)
        return asked

    return make


Dispatched_ = Callable[..., Awaitable[GenerationJob]]


@pytest.fixture
def dispatched(creator_db: Database, queued: Queued, sender: OnePass) -> Dispatched_:
    """A job of the test's tenant that its workflow took; it waits for the callback."""

    async def make(asked: PostGenerationRequested | None = None) -> GenerationJob:
        asked = await queued(asked)
        await sender()
        job = (await jobs_of(creator_db, asked.post_id))[-1]
        assert job.state == "dispatched", job.error
        return job

    return make


TimedOut = Callable[[], Awaitable[GenerationJob]]


@pytest.fixture
def timed_out(creator_db: Database, dispatched: Dispatched_) -> TimedOut:
    """A dispatched job (as it was then) whose deadline passed with no callback: the sweeper
    timed it out."""

    async def make() -> GenerationJob:
        job = await dispatched()
        await pass_deadline(creator_db, job.id)
        await sweep(creator_db)
        return job

    return make


# ---- dispatch ----------------------------------------------------------------------------
async def test_a_request_of_an_n8n_workspace_makes_a_queued_n8n_job(
    creator_db: Database, workflow: Workflow, queued: Queued
) -> None:
    asked = await queued()

    job = await job_of(creator_db, asked.post_id)
    assert (job.engine, job.state, job.attempts) == ("n8n", "queued", 0)
    assert sent_for(workflow, job.id) == []


async def test_a_queued_job_is_dispatched_once_signed_with_the_workspaces_secret(
    creator_db: Database, tenant: UUID, workflow: Workflow, queued: Queued, sender: OnePass
) -> None:
    asked = await queued()

    await sender()

    job = await job_of(creator_db, asked.post_id)
    [got] = sent_for(workflow, job.id)
    verify_signature(
        secret=SECRET,
        timestamp=got.headers["x-bai-timestamp"],
        signature=got.headers["x-bai-signature"],
        body=got.body,
        now=time.time(),
    )
    assert "x-bai-secret" not in got.headers
    assert got.path == "/webhook/bai"
    body = got.json()
    assert (body["job_id"], body["kind"], body["tenant_id"]) == (job.id, "generate", str(tenant))
    assert body["callback_url"].endswith(f"/v1/webhooks/n8n/{job.id}")
    assert (body["post_id"], body["channel"], body["language"]) == (str(asked.post_id), "x", "en")
    assert body["constraints"] == {
        "max_chars": 280,
        "max_hashtags": 2,
        "title": False,
        "image": False,
    }
    assert body["brand"]["name"] == "Acme Coffee"
    assert (body["brand"]["voice"]["tone"], body["brand"]["voice"]["keywords"]) == (
        "warm",
        ["coffee"],
    )
    assert body["campaign"] == {
        "id": str(asked.campaign_id),
        "name": "December push",
        "brief": "Launch the winter blend.",
        "goal": "Sell 500 bags before Christmas",
    }
    assert body["note"] == "Mention the tasting on Saturday"
    assert (job.state, job.attempts) == ("dispatched", 1)
    assert job.dispatched_at is not None
    assert job.deadline_at == job.dispatched_at + timedelta(seconds=DEADLINE_SECONDS)

    await sender()

    await assert_dispatched_once(creator_db, workflow, job)


async def test_a_job_is_dispatched_only_once_billing_holds_its_credit(
    creator_db: Database, workflow: Workflow, queued: Queued, sender: OnePass
) -> None:
    # Found by the callback storm (tests/chaos): a workflow that answered at once, before
    # billing's hold was recorded, completed the job with no credit to commit; the hold
    # recorded after it was never settled, so the workspace lost that credit for good.
    asked = await queued(held=False)

    await sender()

    job = await job_of(creator_db, asked.post_id)
    assert (job.state, job.credits, sent_for(workflow, job.id)) == ("queued", "none", [])

    await hold_credit(creator_db, asked.post_id)
    await sender()

    await assert_dispatched_once(creator_db, workflow, job)


async def test_a_workflow_that_asks_for_it_gets_the_secret_header_too(
    creator_db: Database, workflow: Workflow, queued: Queued, sender: OnePass
) -> None:
    asked = await queued(accept_secret_header=True)

    await sender()

    [got] = sent_for(workflow, (await job_of(creator_db, asked.post_id)).id)
    assert got.headers["x-bai-secret"] == SECRET


async def test_verification_names_the_jobs_tenant_and_secret_and_knows_no_other_job(
    creator_db: Database, tenant: UUID, dispatched: Dispatched_, engine_box: Fernet
) -> None:
    job = await dispatched()

    async with creator_db.transaction() as session:
        jobs = replace(SWEPT, box=engine_box)
        known = await jobs.signer_for(session, job.id)
        unknown = await jobs.signer_for(session, "gen_nosuchjob000000000000")

    assert known is not None
    assert (known.tenant_id, known.secret) == (tenant, SECRET)
    assert not known.accept_secret_header
    assert unknown is None


# ---- callbacks ---------------------------------------------------------------------------
async def test_a_completed_callback_stores_the_content_and_announces_it(
    creator_db: Database, tenant: UUID, dispatched: Dispatched_, call_back: CallBack
) -> None:
    asked = request()
    job = await dispatched(asked)

    await call_back(
        tenant,
        job.id,
        status="completed",
        content=content(call_to_action="Drop by", alt_text="A steaming cup"),
    )

    done = await job_of(creator_db, asked.post_id)
    assert (done.state, done.error) == ("completed", None)
    assert done.completed_at is not None
    [version] = await versions_of(creator_db, asked.post_id)
    assert (version.version, version.job_id, version.engine) == (1, job.id, "n8n")
    assert (version.content["text"], version.content["call_to_action"]) == (TEXT, "Drop by")
    [answer] = await generated(creator_db, job.id)
    assert (answer.request_id, answer.post_id, answer.job_id, answer.version) == (
        asked.request_id,
        asked.post_id,
        job.id,
        1,
    )
    assert (answer.content.text, answer.content.alt_text) == (TEXT, "A steaming cup")
    assert await failures(creator_db, job.id) == []


@pytest.mark.parametrize(
    ("hashtags", "kept"),
    [
        (["#coffee", "coffee", "#winter"], ["coffee", "winter"]),
        ([" #Coffee ", "#coffee", "#", "  ", "Winter"], ["Coffee", "Winter"]),
        (["one", "two", "three"], ["one", "two"]),
    ],
    ids=["deduplicated", "trimmed-whatever-the-case", "no-more-than-x-allows"],
)
async def test_hashtags_are_kept_without_hash_once_each_and_within_the_channels_limit(
    creator_db: Database,
    tenant: UUID,
    dispatched: Dispatched_,
    call_back: CallBack,
    hashtags: list[str],
    kept: list[str],
) -> None:
    job = await dispatched()

    await call_back(tenant, job.id, status="completed", content=content(hashtags=hashtags))

    [answer] = await generated(creator_db, job.id)
    assert answer.content.hashtags == kept
    [version] = await versions_of(creator_db, job.post_id)
    assert version.content["hashtags"] == kept


async def test_a_repeated_callback_changes_nothing(
    creator_db: Database, tenant: UUID, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job = await dispatched()
    await call_back(tenant, job.id, status="completed", content=content())
    first = await job_of(creator_db, job.post_id)

    await call_back(tenant, job.id, status="completed", content=content("Another wording."))
    await call_back(tenant, job.id, status="failed", error="a stale retry")

    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.completed_at, after.error) == (
        "completed",
        first.completed_at,
        None,
    )
    [version] = await versions_of(creator_db, job.post_id)
    assert version.content["text"] == TEXT
    assert len(await generated(creator_db, job.id)) == 1
    assert await failures(creator_db, job.id) == []


async def test_a_failed_callback_fails_the_job_with_the_workflows_reason(
    creator_db: Database, tenant: UUID, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job = await dispatched()

    await call_back(tenant, job.id, status="failed", error="OpenAI quota exceeded")

    reason = "the workflow reported a failure: OpenAI quota exceeded"
    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.error) == ("failed", reason)
    [failed] = await failures(creator_db, job.id)
    assert (failed.request_id, failed.post_id, failed.error) == (
        job.request_id,
        job.post_id,
        reason,
    )
    await assert_no_content(creator_db, job)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"status": "completed"}, "the workflow's reply is not valid content: content: "),
        ({"status": "completed", "content": "Hello"}, "not valid content: content: "),
        (
            {"status": "completed", "content": {"title": "No text"}},
            "the workflow's reply is not valid content: text: Field required",
        ),
        (
            {"status": "completed", "content": {"text": "   "}},
            "the workflow's reply is not valid content: text is empty",
        ),
        (
            {"status": "completed", "content": {"text": "a" * 281}},
            "the workflow's reply is not valid content: text has 281 characters; x allows 280",
        ),
        (
            {"status": "completed", "content": {"text": "a" * 275, "hashtags": ["coffee"]}},
            "text has 284 characters with its hashtags; x allows 280",
        ),
        ({"status": "done"}, "the workflow's reply has an unknown status: 'done'"),
        ({}, "the workflow's reply has an unknown status: None"),
    ],
    ids=[
        "no-content",
        "content-not-an-object",
        "content-without-text",
        "empty-text",
        "text-too-long",
        "too-long-with-hashtags",
        "unknown-status",
        "no-status",
    ],
)
async def test_a_malformed_reply_fails_the_job_saying_what_was_wrong(
    creator_db: Database,
    tenant: UUID,
    dispatched: Dispatched_,
    call_back: CallBack,
    reply: dict[str, Any],
    reason: str,
) -> None:
    job = await dispatched()

    await call_back(tenant, job.id, **reply)

    after = await job_of(creator_db, job.post_id)
    assert after.state == "failed"
    assert reason in (after.error or "")
    [failed] = await failures(creator_db, job.id)
    assert failed.error == after.error
    await assert_no_content(creator_db, job)


async def test_a_reply_that_fits_the_channel_exactly_is_accepted(
    creator_db: Database, tenant: UUID, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job = await dispatched()

    await call_back(tenant, job.id, status="completed", content=content("a" * 280))

    assert (await job_of(creator_db, job.post_id)).state == "completed"
    [answer] = await generated(creator_db, job.id)
    assert len(answer.content.text) == 280


async def test_a_callback_naming_another_tenant_changes_nothing(
    creator_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job = await dispatched()
    intruder = uuid4()

    await call_back(intruder, job.id, status="completed", content=content("Evil text"))
    await call_back(intruder, job.id, status="failed", error="nope")

    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.error, after.completed_at) == ("dispatched", None, None)
    await assert_no_content(creator_db, job)
    assert await failures(creator_db, job.id) == []


async def test_a_callback_for_a_builtin_job_changes_nothing(
    creator_db: Database, tenant: UUID, call_back: CallBack
) -> None:
    asked = request()
    await ask(creator_db, tenant, asked)  # the workspace never chose an engine
    job = await job_of(creator_db, asked.post_id)

    await call_back(tenant, job.id, status="completed", content=content("Not from us"))

    after = await job_of(creator_db, asked.post_id)
    assert (after.engine, after.state) == ("builtin", "queued")
    await assert_no_content(creator_db, job)


# ---- dispatch failures -------------------------------------------------------------------
async def test_a_workflow_answering_500_leaves_the_job_queued_for_later(
    creator_db: Database, workflow: Workflow, queued: Queued, sender: OnePass
) -> None:
    workflow.status = 500
    asked = await queued()
    before = datetime.now(UTC)

    await sender()

    job = await job_of(creator_db, asked.post_id)
    assert len(sent_for(workflow, job.id)) == 1
    assert (job.state, job.attempts) == ("queued", 1)
    assert job.next_attempt_at > before
    assert job.error == "n8n answered 500: workflow failed"
    assert job.completed_at is None
    assert await failures(creator_db, job.id) == []


async def test_after_the_last_retryable_failure_the_job_fails_naming_the_attempts(
    creator_db: Database, workflow: Workflow, queued: Queued, sender_for: SenderFor
) -> None:
    workflow.status = 503
    asked = await queued()
    sender = sender_for(dispatch_max_attempts=3)

    await sender()
    for _ in range(2):
        job = await job_of(creator_db, asked.post_id)
        assert job.state == "queued"
        await retry_now(creator_db, job.id)
        await sender()

    reason = "the workflow did not take the job after 3 attempts: n8n answered 503: workflow failed"
    await assert_failed_for_good(creator_db, workflow, asked, attempts=3, reason=reason)


async def test_a_refusal_fails_the_job_at_once(
    creator_db: Database, workflow: Workflow, queued: Queued, sender: OnePass
) -> None:
    workflow.status = 400
    asked = await queued()

    await sender()

    reason = "the workflow did not take the job after 1 attempt: n8n answered 400: workflow failed"
    await assert_failed_for_good(creator_db, workflow, asked, attempts=1, reason=reason)


async def test_a_job_of_a_workspace_back_on_builtin_fails_without_being_sent(
    creator_db: Database,
    tenant: UUID,
    workflow: Workflow,
    use_engine: UseEngine,
    queued: Queued,
    sender: OnePass,
) -> None:
    asked = await queued()
    await use_engine(tenant, type="builtin")

    await sender()

    job = await job_of(creator_db, asked.post_id)
    assert (job.engine, job.state, job.error) == ("n8n", "failed", n8n.NOT_N8N)
    assert "no longer n8n" in n8n.NOT_N8N
    assert sent_for(workflow, job.id) == []
    [failed] = await failures(creator_db, job.id)
    assert failed.error == n8n.NOT_N8N


async def test_an_unreadable_secret_fails_the_job_without_sending_it(
    creator_db: Database, tenant: UUID, workflow: Workflow, queued: Queued, sender: OnePass
) -> None:
    asked = await queued()
    async with creator_db.transaction() as session:  # the secret is read when the job is sent
        row = await session.get_one(EngineSettings, tenant)
        row.secret = Fernet(Fernet.generate_key()).encrypt(SECRET.encode())  # an old key

    await sender()

    job = await job_of(creator_db, asked.post_id)
    assert (job.state, job.error) == ("failed", n8n.UNREADABLE_SECRET)
    assert sent_for(workflow, job.id) == []


class _Crashing(WebhookDispatcher):
    async def dispatch(
        self,
        *,
        url: str,
        payload: Mapping[str, Any],
        secret: str,
        secret_header: bool = False,
        event_id: str | None = None,
    ) -> Delivered:
        raise RuntimeError("a bug in the dispatcher")


async def test_an_unexpected_dispatch_error_leaves_the_job_queued_for_later(
    creator_db: Database, queued: Queued, sender_for: SenderFor, http: httpx.AsyncClient
) -> None:
    asked = await queued()

    await sender_for(dispatcher=_Crashing(client=http))()

    job = await job_of(creator_db, asked.post_id)
    assert (job.state, job.attempts) == ("queued", 1)
    assert "dispatch failed unexpectedly" in (job.error or "")


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 nothing listens on: a dead workflow."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhook/bai"


async def test_a_dead_workflow_opens_the_breaker_and_the_retry_waits_for_it(
    creator_db: Database, queued: Queued, sender_for: SenderFor, calls: Calls
) -> None:
    url = _closed_port_url()
    asked = await queued(url=url)
    sender = sender_for(failure_threshold=1, open_seconds=600)
    before = datetime.now(UTC)

    await sender()

    job = await job_of(creator_db, asked.post_id)
    assert (job.state, job.attempts) == ("queued", 1)
    assert "could not reach http://127.0.0.1" in (job.error or "")
    assert calls.to(url) == 1

    await retry_now(creator_db, job.id)
    await sender()

    job = await job_of(creator_db, asked.post_id)
    assert calls.to(url) == 1  # the open breaker made no call
    assert job.state == "queued"
    assert "paused" in (job.error or "")
    assert job.next_attempt_at >= before + timedelta(seconds=600)


# ---- deadlines ---------------------------------------------------------------------------
async def test_a_dispatched_job_past_its_deadline_times_out(
    creator_db: Database, dispatched: Dispatched_
) -> None:
    job = await dispatched()
    await sweep(creator_db)
    assert (await job_of(creator_db, job.post_id)).state == "dispatched"  # not due yet

    await pass_deadline(creator_db, job.id)
    await sweep(creator_db)

    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.error) == ("timed_out", DID_NOT_CALL_BACK)
    [failed] = await failures(creator_db, job.id)
    assert (failed.request_id, failed.error) == (job.request_id, DID_NOT_CALL_BACK)


async def test_a_late_result_for_the_posts_latest_job_is_still_applied(
    creator_db: Database, tenant: UUID, timed_out: TimedOut, call_back: CallBack
) -> None:
    job = await timed_out()

    await call_back(tenant, job.id, status="completed", content=content())

    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.error) == ("completed", None)
    [answer] = await generated(creator_db, job.id)
    assert (answer.request_id, answer.version, answer.content.text) == (job.request_id, 1, TEXT)
    assert [v.job_id for v in await versions_of(creator_db, job.post_id)] == [job.id]


async def test_a_late_result_for_a_retried_post_is_recorded_and_ignored(
    creator_db: Database, tenant: UUID, timed_out: TimedOut, call_back: CallBack
) -> None:
    first = await timed_out()
    await ask(creator_db, tenant, request(first.post_id))  # the planner asks again

    await call_back(tenant, first.id, status="completed", content=content())

    old, new = await jobs_of(creator_db, first.post_id)
    assert (old.id, old.state, new.state) == (first.id, "timed_out", "queued")
    assert old.error == f"{DID_NOT_CALL_BACK} (a late result was ignored: the post was retried)"
    await assert_no_content(creator_db, first)


async def test_a_repeated_late_result_for_a_retried_post_is_noted_once(
    creator_db: Database, tenant: UUID, timed_out: TimedOut, call_back: CallBack
) -> None:
    first = await timed_out()
    await ask(creator_db, tenant, request(first.post_id))
    await call_back(tenant, first.id, status="completed", content=content())
    noted = (await jobs_of(creator_db, first.post_id))[0].error

    await call_back(tenant, first.id, status="completed", content=content())

    assert (await jobs_of(creator_db, first.post_id))[0].error == noted


async def test_a_late_failure_after_a_timeout_announces_nothing_more(
    creator_db: Database, tenant: UUID, timed_out: TimedOut, call_back: CallBack
) -> None:
    job = await timed_out()

    await call_back(tenant, job.id, status="failed", error="too late")
    await call_back(tenant, job.id, status="nonsense")

    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.error) == ("timed_out", DID_NOT_CALL_BACK)
    assert len(await failures(creator_db, job.id)) == 1


# ---- a worker that died mid-dispatch -----------------------------------------------------
async def test_recovery_puts_a_job_left_mid_dispatch_back_in_the_queue(
    creator_db: Database, dispatched: Dispatched_
) -> None:
    job = await dispatched()
    await leave_mid_dispatch(creator_db, job.id, since=ago(seconds=5))
    await sweep(creator_db, stuck_after=timedelta(seconds=30))
    assert (await job_of(creator_db, job.post_id)).state == "dispatching"  # may still be live

    await change_job(creator_db, job.id, next_attempt_at=ago(hours=1))
    await sweep(creator_db, stuck_after=timedelta(seconds=30))

    assert (await job_of(creator_db, job.post_id)).state == "queued"


async def test_a_recovered_job_goes_out_again_under_the_same_event_id(
    creator_db: Database, workflow: Workflow, dispatched: Dispatched_, sender: OnePass
) -> None:
    job = await dispatched()
    await leave_mid_dispatch(creator_db, job.id, since=ago(hours=1))
    await sweep(creator_db)

    await sender()

    assert [d.headers["x-bai-event-id"] for d in sent_for(workflow, job.id)] == [job.id, job.id]
    after = await job_of(creator_db, job.post_id)
    assert (after.state, after.attempts) == ("dispatched", 2)
