"""Publishing due posts through the tenant's n8n workflow (``pub_`` jobs).

A real HTTP server on 127.0.0.1 (uvicorn on a socket bound to port 0) stands in for the
tenants' workflows: each test gets its own path on it, records what reached that path and
says what the path answers. The publisher's sweep is called directly, one pass at a time.

The database is shared by the whole session and a sweep looks at every tenant's due posts,
so assertions only look at the test's own tenant, post, job and path.
"""

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from functools import partial
from typing import Any, Protocol
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, update
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bai_contracts import CallbackReceived, PostStateChanged, callback_subject
from bai_platform.db import Database
from bai_platform.dispatching import dispatch_pass
from bai_platform.envelope import Envelope, new_event
from bai_platform.messaging import connect
from bai_platform.secrets import fernet_for
from bai_platform.webhooks import CircuitOpen, Delivered, WebhookDispatcher, verify_signature
from bai_platform.worker import WorkerContext
from bai_testing.plugin import trusting_client
from bai_testing.servers import served
from planner.app import create_app
from planner.events import on_publish_callback
from planner.models import Campaign, Post, PostTransition, PublishingTarget, PublishJob
from planner.service.publishing import PublishJobs, publish_jobs
from planner.settings import PlannerSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]
OutboxOf = Callable[[UUID], Awaitable[list[tuple[str, Envelope]]]]

TARGET_URL = "/v1/planner/publishing-target"
SECRET = "n8n-publishing-secret-0123456789"
TEXT = "Fresh pastries every morning at 8"
NO_TARGET = "no publishing workflow is configured"
EXAMPLE_URL = "https://n8n.example.com/webhook/publish"
ACCEPTED: dict[str, Any] = {"accepted": True}
CRASHED: dict[str, Any] = {"message": "workflow crashed"}


def _a_second_ago() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


# ---- the tenants' workflows: one local HTTP server ---------------------------------------
@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Workflows:
    """What reached each path, and what each path answers (200 unless told)."""

    base: str
    requests: list[Received] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


def _app(workflows: Workflows) -> Starlette:
    async def hook(request: Request) -> Response:
        name = request.path_params["name"]
        workflows.requests.append(Received(name, dict(request.headers), await request.body()))
        status, body = workflows.answers.get(name, (200, ACCEPTED))
        return JSONResponse(body, status_code=status)

    return Starlette(routes=[Route("/hook/{name}", hook, methods=["POST"])])


@pytest.fixture(scope="module")
async def workflows() -> AsyncIterator[Workflows]:
    listening = Workflows(base="")
    async with served(_app(listening)) as base:
        listening.base = base
        yield listening


@dataclass
class Hook:
    """The test's own workflow: its URL, what reached it, and what it answers."""

    workflows: Workflows
    name: str

    @classmethod
    def new(cls, workflows: Workflows) -> "Hook":
        return cls(workflows, uuid4().hex)

    @property
    def url(self) -> str:
        return f"{self.workflows.base}/hook/{self.name}"

    def received(self) -> list[Received]:
        return [r for r in self.workflows.requests if r.name == self.name]

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.workflows.answers[self.name] = (status, body)


@pytest.fixture
def hook(workflows: Workflows) -> Hook:
    return Hook.new(workflows)


# ---- the publisher, one sweep at a time --------------------------------------------------
@pytest.fixture(scope="module")
async def nats_client(planner_settings: PlannerSettings) -> AsyncIterator[NatsClient]:
    nc = await connect(planner_settings.nats_url, name="planner-publishing-tests")
    try:
        yield nc
    finally:
        await nc.drain()


@pytest.fixture
def box(planner_settings: PlannerSettings) -> Fernet:
    return fernet_for(planner_settings.secret_key, "planner/publishing-secrets")


@pytest.fixture
def jobs(planner_settings: PlannerSettings, box: Fernet) -> PublishJobs:
    return publish_jobs(planner_settings, box)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# One pass of the publisher task: open jobs for due posts, dispatch, expire the silent.
OnePass = Callable[[], Awaitable[None]]
PublisherFor = Callable[..., OnePass]


@pytest.fixture
def publisher_for(
    planner_settings: PlannerSettings,
    planner_db: Database,
    nats_client: NatsClient,
    box: Fernet,
    http: httpx.AsyncClient,
) -> PublisherFor:
    """A publisher on the session's database; ``overrides`` change its settings.

    Its breaker never opens unless asked: other tests' retries reach the same server.
    """

    def build(*, dispatcher: WebhookDispatcher | None = None, **overrides: Any) -> OnePass:
        settings = planner_settings.model_copy(update=overrides)
        ctx = WorkerContext(
            settings=settings, db=planner_db, nc=nats_client, js=nats_client.jetstream()
        )
        webhooks = dispatcher or WebhookDispatcher(
            client=http,
            timeout_seconds=settings.dispatch_timeout_seconds,
            failure_threshold=1000,
            allow_private=True,  # the stand-in workflow listens on 127.0.0.1
        )
        return partial(dispatch_pass, ctx, webhooks, jobs=publish_jobs(settings, box))

    return build


@pytest.fixture
def publisher(publisher_for: PublisherFor) -> OnePass:
    return publisher_for()


# ---- the tenant's data -------------------------------------------------------------------
async def _put_target(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, secret: str = SECRET
) -> httpx.Response:
    body = {"webhook_url": url, "secret": secret}
    return await client.put(TARGET_URL, json=body, headers=headers)


class PutTarget(Protocol):
    """The test's tenant's target, as a member of ``role`` sets it: the response."""

    async def __call__(self, role: str, url: str, secret: str = SECRET) -> httpx.Response: ...


@pytest.fixture
def put_target(client: httpx.AsyncClient, identity_for: IdentityFor, tenant: UUID) -> PutTarget:
    async def put(role: str, url: str, secret: str = SECRET) -> httpx.Response:
        return await _put_target(client, identity_for(tenant, role), url, secret)

    return put


SetTarget = Callable[[UUID, str], Awaitable[None]]


@pytest.fixture
def set_target(client: httpx.AsyncClient, identity_for: IdentityFor) -> SetTarget:
    """A tenant's owner sets its workflow's URL (and SECRET)."""

    async def put(tenant_id: UUID, url: str) -> None:
        response = await _put_target(client, identity_for(tenant_id, "owner"), url)
        assert response.status_code == 200, response.text

    return put


DuePost = Callable[[UUID], Awaitable[UUID]]


@pytest.fixture
def due_post(planner_db: Database, brand: str) -> DuePost:
    """A scheduled post of the tenant, due a second ago; its id."""

    async def make(tenant_id: UUID) -> UUID:
        at = _a_second_ago()
        campaign = Campaign(
            tenant_id=tenant_id,
            brand_id=UUID(brand),
            name=f"Publishing {uuid4().hex[:8]}",
            channels=["instagram"],
            state="active",
            created_by="test",
        )
        async with planner_db.transaction() as session:
            session.add(campaign)
            await session.flush()
            post = Post(
                tenant_id=tenant_id,
                campaign_id=campaign.id,
                channel="instagram",
                local_date=at.date(),
                local_time=clock_time(at.hour, at.minute, at.second),
                scheduled_at=at,
                state="scheduled",
                origin="test",
                text=TEXT,
                hashtags=["bakery"],
                content_version=1,
            )
            session.add(post)
            await session.flush()
            return post.id

    return make


@dataclass
class Rows:
    """Reads and nudges of the test's rows."""

    db: Database

    async def post(self, post_id: UUID) -> Post:
        async with self.db.transaction() as session:
            return await session.get_one(Post, post_id)

    async def jobs(self, post_id: UUID) -> list[PublishJob]:
        async with self.db.transaction() as session:
            query = select(PublishJob).where(col(PublishJob.post_id) == post_id)
            return list((await session.scalars(query.order_by(col(PublishJob.created_at)))).all())

    async def job(self, post_id: UUID) -> PublishJob:
        [job] = await self.jobs(post_id)
        return job

    async def outcome(self, post_id: UUID) -> tuple[str, str | None]:
        """The post's state and last error."""
        post = await self.post(post_id)
        return post.state, post.last_error

    async def progress(self, post_id: UUID) -> tuple[str, int]:
        """The state and attempts of the post's one job."""
        job = await self.job(post_id)
        return job.state, job.attempts

    async def history(self, post_id: UUID) -> list[PostTransition]:
        async with self.db.transaction() as session:
            query = select(PostTransition).where(col(PostTransition.post_id) == post_id)
            return list((await session.scalars(query.order_by(col(PostTransition.id)))).all())

    async def target(self, tenant_id: UUID) -> PublishingTarget | None:
        async with self.db.transaction() as session:
            return await session.get(PublishingTarget, tenant_id)

    async def change_job(self, job_id: str, **values: Any) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(PublishJob).where(col(PublishJob.id) == job_id).values(values)
            )

    async def change_post(self, post_id: UUID, **values: Any) -> None:
        async with self.db.transaction() as session:
            await session.execute(update(Post).where(col(Post.id) == post_id).values(values))

    async def retry_now(self, job_id: str) -> None:
        """The backoff is over."""
        await self.change_job(job_id, next_attempt_at=_a_second_ago())

    async def miss_deadline(self, job_id: str) -> None:
        """The workflow's time to call back is over."""
        await self.change_job(job_id, deadline_at=_a_second_ago())


@pytest.fixture
def rows(planner_db: Database) -> Rows:
    return Rows(planner_db)


# ---- the test's post, on its way -----------------------------------------------------------
TargetedPost = Callable[[UUID, Hook], Awaitable[UUID]]


@pytest.fixture
def targeted_post(set_target: SetTarget, due_post: DuePost) -> TargetedPost:
    """A due post of a tenant whose publishing workflow is ``hook``; its id."""

    async def make(tenant_id: UUID, hook: Hook) -> UUID:
        await set_target(tenant_id, hook.url)
        return await due_post(tenant_id)

    return make


@pytest.fixture
async def post_id(targeted_post: TargetedPost, tenant: UUID, hook: Hook) -> UUID:
    """A due post of the test's tenant, whose workflow is the test's hook; not yet swept."""
    return await targeted_post(tenant, hook)


@pytest.fixture
async def job(post_id: UUID, publisher: OnePass, rows: Rows) -> PublishJob:
    """The post's job, after one sweep dispatched it (the hook answered 200)."""
    await publisher()
    return await rows.job(post_id)


@pytest.fixture
async def timed_out(job: PublishJob, publisher: OnePass, rows: Rows) -> PublishJob:
    """The dispatched job, once a sweep found it past its deadline (it failed the post)."""
    await rows.miss_deadline(job.id)
    await publisher()
    return job


@pytest.fixture
async def queued(hook: Hook, post_id: UUID, publisher: OnePass, rows: Rows) -> PublishJob:
    """The post's job, queued again after its first try crashed; the hook now answers 200."""
    hook.answer(500, CRASHED)
    await publisher()
    job = await rows.job(post_id)
    assert (job.state, job.attempts) == ("queued", 1)  # the first try was made, and failed
    hook.answer(200, ACCEPTED)
    return job


@dataclass
class Editor:
    """An editor of the test's tenant, changing a post through the API."""

    client: httpx.AsyncClient
    identity_for: IdentityFor
    tenant: UUID

    @property
    def headers(self) -> dict[str, str]:
        return self.identity_for(self.tenant, "editor")

    async def move(self, post_id: UUID, to: str) -> None:
        url = f"/v1/planner/posts/{post_id}/transitions"
        response = await self.client.post(url, json={"to": to}, headers=self.headers)
        assert response.status_code == 200, response.text

    async def reschedule(self, post_id: UUID, at: datetime) -> None:
        body = {"scheduled_at": at.isoformat()}
        response = await self.client.patch(
            f"/v1/planner/posts/{post_id}", json=body, headers=self.headers
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def editor(client: httpx.AsyncClient, identity_for: IdentityFor, tenant: UUID) -> Editor:
    return Editor(client, identity_for, tenant)


def _callback(tenant_id: UUID, job_id: str, **payload: Any) -> Envelope:
    event = CallbackReceived(
        job_id=job_id, payload={"job_id": job_id, **payload}, verified_by="signature"
    )
    return new_event(
        event,
        source="gateway",
        tenant_id=tenant_id,
        subject=job_id,
        event_type=callback_subject("planner"),
    )


Deliver = Callable[..., Awaitable[None]]


@pytest.fixture
def deliver(planner_db: Database) -> Deliver:
    """Hand a verified callback to the planner, as its consumer would."""

    async def handle(tenant_id: UUID, job_id: str, **payload: Any) -> None:
        async with planner_db.transaction() as session:
            await on_publish_callback(session, _callback(tenant_id, job_id, **payload))

    return handle


async def _state_changes(outbox_of: OutboxOf, tenant_id: UUID) -> list[PostStateChanged]:
    return [
        e.payload(PostStateChanged)
        for _, e in await outbox_of(tenant_id)
        if e.type == PostStateChanged.subject
    ]


# ---- the publishing target ---------------------------------------------------------------
@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_owners_and_admins_store_the_target_with_its_secret_encrypted(
    put_target: PutTarget, tenant: UUID, rows: Rows, box: Fernet, role: str
) -> None:
    response = await put_target(role, EXAMPLE_URL)

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"webhook_url", "accept_secret_header", "updated_at"}
    assert response.json()["webhook_url"] == EXAMPLE_URL
    stored = await rows.target(tenant)
    assert stored is not None
    assert SECRET.encode() not in stored.secret
    assert box.decrypt(stored.secret).decode() == SECRET


async def test_reading_the_target_never_shows_the_secret(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    hook: Hook,
    set_target: SetTarget,
) -> None:
    await set_target(tenant, hook.url)

    response = await client.get(TARGET_URL, headers=identity_for(tenant, "owner"))

    assert response.status_code == 200, response.text
    assert response.json()["webhook_url"] == hook.url
    assert "secret" not in response.json()
    assert SECRET not in response.text


async def test_a_workspace_without_a_target_reads_404(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.get(TARGET_URL, headers=identity_for(tenant, "owner"))

    assert response.status_code == 404, response.text


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_editors_and_viewers_may_not_set_the_target(
    put_target: PutTarget, tenant: UUID, rows: Rows, role: str
) -> None:
    response = await put_target(role, EXAMPLE_URL)

    assert response.status_code == 403, response.text
    assert await rows.target(tenant) is None


@pytest.mark.parametrize(
    ("url", "secret"),
    [("not a url", SECRET), ("ftp://n8n.example.com/publish", SECRET), (EXAMPLE_URL, "too-short")],
    ids=["not-a-url", "not-http", "short-secret"],
)
async def test_a_bad_url_or_a_short_secret_is_422(
    put_target: PutTarget, tenant: UUID, rows: Rows, url: str, secret: str
) -> None:
    response = await put_target("owner", url, secret)

    assert response.status_code == 422, response.text
    assert await rows.target(tenant) is None


# ---- dispatch ----------------------------------------------------------------------------
async def test_a_due_post_is_dispatched_once_signed_with_the_tenants_secret(
    tenant: UUID,
    hook: Hook,
    post_id: UUID,
    publisher: OnePass,
    rows: Rows,
    planner_settings: PlannerSettings,
) -> None:
    await publisher()

    [got] = hook.received()
    job = await rows.job(post_id)
    verify_signature(
        secret=SECRET,
        timestamp=got.headers["x-bai-timestamp"],
        signature=got.headers["x-bai-signature"],
        body=got.body,
        now=time.time(),
    )
    assert got.headers["x-bai-event-id"] == job.id
    sent = got.json()
    assert sent["job_id"] == job.id
    assert job.id.startswith("pub_")
    assert sent["kind"] == "publish"
    assert sent["tenant_id"] == str(tenant)
    assert sent["callback_url"].endswith(f"/v1/webhooks/n8n/{job.id}")
    assert sent["post"]["id"] == str(post_id)
    assert sent["post"]["text"] == TEXT
    assert (job.state, job.attempts) == ("dispatched", 1)
    assert job.dispatched_at is not None
    assert job.deadline_at is not None
    deadline = timedelta(seconds=planner_settings.publish_callback_deadline_seconds)
    assert job.deadline_at - job.dispatched_at == deadline
    assert (await rows.post(post_id)).state == "scheduled"

    await publisher()

    assert len(hook.received()) == 1
    assert [j.id for j in await rows.jobs(post_id)] == [job.id]


async def test_verification_names_the_jobs_tenant_and_secret_and_knows_no_other_job(
    tenant: UUID, job: PublishJob, planner_db: Database, jobs: PublishJobs
) -> None:
    async with planner_db.transaction() as session:
        known = await jobs.signer_for(session, job.id)
        unknown = await jobs.signer_for(session, "pub_nosuchjob0000000000")

    assert known is not None
    assert (known.tenant_id, known.secret) == (tenant, SECRET)
    assert not known.accept_secret_header
    assert unknown is None


# ---- callbacks ---------------------------------------------------------------------------
async def test_a_published_callback_publishes_the_post_once(
    tenant: UUID,
    post_id: UUID,
    job: PublishJob,
    rows: Rows,
    deliver: Deliver,
    outbox_of: OutboxOf,
) -> None:
    await deliver(tenant, job.id, status="published", url="https://instagram.com/p/1")
    applied = await rows.job(post_id)
    await deliver(tenant, job.id, status="published", url="https://instagram.com/p/2")
    await deliver(tenant, job.id, status="failed", error="a stale retry")

    assert await rows.outcome(post_id) == ("published", None)
    [moved] = await rows.history(post_id)
    assert (moved.from_state, moved.to_state) == ("scheduled", "published")
    assert moved.actor == "system:publisher"
    [event] = await _state_changes(outbox_of, tenant)
    assert (event.post_id, event.to_state, event.actor) == (post_id, "published", moved.actor)
    after = await rows.job(post_id)
    assert (after.state, after.external_url) == ("succeeded", "https://instagram.com/p/1")
    assert after.completed_at is not None
    assert after.completed_at == applied.completed_at


async def test_a_failed_callback_fails_the_post_with_the_workflows_message(
    tenant: UUID, post_id: UUID, job: PublishJob, rows: Rows, deliver: Deliver
) -> None:
    await deliver(tenant, job.id, status="failed", error="Instagram token expired")

    assert await rows.outcome(post_id) == ("failed", "Instagram token expired")
    [moved] = await rows.history(post_id)
    assert (moved.to_state, moved.actor, moved.note) == (
        "failed",
        "system:publisher",
        "Instagram token expired",
    )
    assert (await rows.job(post_id)).state == "failed"


async def test_a_callback_naming_another_tenant_changes_nothing(
    post_id: UUID, job: PublishJob, rows: Rows, deliver: Deliver, outbox_of: OutboxOf
) -> None:
    intruder = uuid4()

    await deliver(intruder, job.id, status="published", url="https://instagram.com/p/evil")
    await deliver(intruder, job.id, status="failed", error="nope")

    assert (await rows.post(post_id)).state == "scheduled"
    after = await rows.job(post_id)
    assert (after.state, after.external_url, after.last_error) == ("dispatched", None, None)
    assert await rows.history(post_id) == []
    assert await _state_changes(outbox_of, intruder) == []


@pytest.mark.parametrize("status", ["done", None, 7])
async def test_a_malformed_status_is_recorded_on_the_job_and_moves_nothing(
    tenant: UUID, post_id: UUID, job: PublishJob, rows: Rows, deliver: Deliver, status: object
) -> None:
    await deliver(tenant, job.id, status=status, url="https://instagram.com/p/1")

    assert (await rows.post(post_id)).state == "scheduled"
    after = await rows.job(post_id)
    assert after.state == "dispatched"
    assert after.last_error == f"callback ignored: unknown status {str(status)!r}"
    assert await rows.history(post_id) == []


# ---- failures and retries ----------------------------------------------------------------
async def test_a_workflow_answering_500_leaves_the_job_queued_for_later(
    hook: Hook, post_id: UUID, publisher: OnePass, rows: Rows
) -> None:
    hook.answer(500, CRASHED)
    before = datetime.now(UTC)

    await publisher()

    assert len(hook.received()) == 1
    job = await rows.job(post_id)
    assert (job.state, job.attempts) == ("queued", 1)
    assert job.next_attempt_at > before
    assert job.last_error == "n8n answered 500: workflow crashed"
    assert await rows.outcome(post_id) == ("scheduled", None)


async def test_after_the_last_retryable_failure_the_post_fails_with_the_reason(
    hook: Hook, post_id: UUID, publisher_for: PublisherFor, rows: Rows
) -> None:
    hook.answer(503, {"message": "n8n is restarting"})
    publisher = publisher_for(dispatch_max_attempts=3)

    await publisher()
    for _ in range(2):
        assert (await rows.post(post_id)).state == "scheduled"
        await rows.retry_now((await rows.job(post_id)).id)
        await publisher()

    assert len(hook.received()) == 3
    assert await rows.outcome(post_id) == ("failed", "n8n answered 503: n8n is restarting")
    assert await rows.progress(post_id) == ("failed", 3)
    [moved] = await rows.history(post_id)
    assert (moved.to_state, moved.actor) == ("failed", "system:publisher")


async def test_a_refusal_fails_the_post_at_once(
    hook: Hook, post_id: UUID, publisher: OnePass, rows: Rows
) -> None:
    hook.answer(400, {"message": "unknown channel"})

    await publisher()

    assert len(hook.received()) == 1
    assert await rows.outcome(post_id) == ("failed", "n8n answered 400: unknown channel")
    assert await rows.progress(post_id) == ("failed", 1)


async def test_without_a_publishing_target_the_post_fails_at_once(
    tenant: UUID, due_post: DuePost, publisher: OnePass, rows: Rows
) -> None:
    post_id = await due_post(tenant)

    await publisher()

    post = await rows.post(post_id)
    assert post.state == "failed"
    assert NO_TARGET in (post.last_error or "")
    assert (await rows.job(post_id)).state == "failed"


# ---- deadlines ---------------------------------------------------------------------------
async def test_a_dispatched_job_past_its_deadline_fails_the_post(
    hook: Hook, post_id: UUID, job: PublishJob, publisher: OnePass, rows: Rows
) -> None:
    await publisher()
    assert (await rows.job(post_id)).state == "dispatched"  # the deadline is an hour off

    await rows.miss_deadline(job.id)
    await publisher()

    post = await rows.post(post_id)
    assert post.state == "failed"
    assert post.last_error == "the workflow did not call back in time"
    assert (await rows.job(post_id)).state == "failed"
    assert len(hook.received()) == 1


async def test_a_late_published_callback_for_the_latest_job_still_publishes_the_post(
    tenant: UUID, post_id: UUID, timed_out: PublishJob, rows: Rows, deliver: Deliver
) -> None:
    assert (await rows.post(post_id)).state == "failed"

    await deliver(tenant, timed_out.id, status="published", url="https://instagram.com/p/late")

    assert await rows.outcome(post_id) == ("published", None)
    assert [t.to_state for t in await rows.history(post_id)] == ["failed", "published"]
    assert (await rows.job(post_id)).state == "succeeded"


async def test_a_late_published_callback_for_a_replaced_job_changes_nothing(
    tenant: UUID,
    editor: Editor,
    post_id: UUID,
    timed_out: PublishJob,
    publisher: OnePass,
    rows: Rows,
    deliver: Deliver,
) -> None:
    for state in ("approved", "scheduled"):  # the editor sends it again
        await editor.move(post_id, state)
    await publisher()
    old, new = await rows.jobs(post_id)
    assert (old.id, old.state, new.state) == (timed_out.id, "failed", "dispatched")

    await deliver(tenant, timed_out.id, status="published", url="https://instagram.com/p/old")

    assert (await rows.post(post_id)).state == "scheduled"
    assert [j.state for j in await rows.jobs(post_id)] == ["failed", "dispatched"]


# ---- what the dispatch must survive ------------------------------------------------------
async def test_a_job_left_mid_dispatch_goes_out_again_under_the_same_event_id(
    hook: Hook, post_id: UUID, job: PublishJob, publisher: OnePass, rows: Rows
) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await rows.change_job(job.id, state="dispatching", next_attempt_at=an_hour_ago)  # died

    await publisher()

    assert [r.headers["x-bai-event-id"] for r in hook.received()] == [job.id, job.id]
    assert await rows.progress(post_id) == ("dispatched", 2)


async def test_a_queued_job_whose_post_was_taken_back_is_not_sent(
    editor: Editor, hook: Hook, post_id: UUID, queued: PublishJob, publisher: OnePass, rows: Rows
) -> None:
    await editor.move(post_id, "approved")

    await rows.retry_now(queued.id)
    await publisher()

    assert len(hook.received()) == 1
    assert await rows.progress(post_id) == ("cancelled", 1)
    assert (await rows.post(post_id)).state == "approved"


async def test_a_queued_job_whose_post_was_moved_later_waits_for_the_new_time(
    tenant: UUID,
    editor: Editor,
    hook: Hook,
    post_id: UUID,
    queued: PublishJob,
    publisher: OnePass,
    rows: Rows,
    deliver: Deliver,
) -> None:
    await editor.reschedule(post_id, datetime.now(UTC) + timedelta(days=1))

    await rows.retry_now(queued.id)
    await publisher()

    assert len(hook.received()) == 1
    assert (await rows.job(post_id)).state == "cancelled"
    # The first try's failure, reported late, does not fail the post waiting for its time.
    await deliver(tenant, queued.id, status="failed", error="Instagram token expired")
    assert (await rows.post(post_id)).state == "scheduled"

    await rows.change_post(post_id, scheduled_at=_a_second_ago())
    await publisher()

    cancelled, sent = await rows.jobs(post_id)
    assert (cancelled.id, sent.state) == (queued.id, "dispatched")
    assert [r.headers["x-bai-event-id"] for r in hook.received()] == [queued.id, sent.id]


async def test_an_unreadable_secret_fails_its_post_and_holds_up_no_other(
    workflows: Workflows,
    tenant: UUID,
    hook: Hook,
    post_id: UUID,
    targeted_post: TargetedPost,
    publisher: OnePass,
    rows: Rows,
    planner_db: Database,
    jobs: PublishJobs,
) -> None:
    under_an_old_key = Fernet(Fernet.generate_key()).encrypt(SECRET.encode())
    async with planner_db.transaction() as session:
        target = await session.get_one(PublishingTarget, tenant)
        target.secret = under_an_old_key
    other_hook = Hook.new(workflows)
    other_post_id = await targeted_post(uuid4(), other_hook)

    await publisher()

    assert hook.received() == []
    post = await rows.post(post_id)
    assert post.state == "failed"
    assert "secret cannot be read" in (post.last_error or "")
    assert len(other_hook.received()) == 1
    assert (await rows.job(other_post_id)).state == "dispatched"
    async with planner_db.transaction() as session:
        signer = await jobs.signer_for(session, (await rows.job(post_id)).id)
    assert signer is not None
    assert signer.secret == ""  # verifies nothing


class _Crashing(WebhookDispatcher):
    """A dispatcher with a bug: every call raises."""

    async def dispatch(self, **_: Any) -> Delivered:
        raise RuntimeError("a bug in the dispatcher")


async def test_an_unexpected_dispatch_error_is_an_attempt_like_any_other(
    post_id: UUID, publisher_for: PublisherFor, rows: Rows, http: httpx.AsyncClient
) -> None:
    publisher = publisher_for(dispatcher=_Crashing(client=http), dispatch_max_attempts=2)

    await publisher()

    job = await rows.job(post_id)
    assert (job.state, job.attempts) == ("queued", 1)
    assert job.last_error == "the workflow could not be called (internal error)"

    await rows.retry_now(job.id)
    await publisher()

    assert ((await rows.job(post_id)).state, (await rows.post(post_id)).state) == (
        "failed",
        "failed",
    )


async def test_an_open_circuit_puts_the_retry_off_until_it_may_close(
    post_id: UUID, job: PublishJob, rows: Rows, planner_db: Database, jobs: PublishJobs
) -> None:
    await rows.change_job(job.id, state="dispatching")
    before = datetime.now(UTC)

    async with planner_db.transaction() as session:
        await replace(jobs, max_attempts=6, backoff=(2.0, 300.0)).record_failure(
            session,
            job_id=job.id,
            failure=CircuitOpen("paused for 600 s", retry_after_seconds=600),
        )

    after = await rows.job(post_id)
    assert after.state == "queued"
    assert after.next_attempt_at >= before + timedelta(seconds=600)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5678/webhook/publish",
        "http://169.254.169.254/latest",
        "http://0x7f000001/",
    ],
)
async def test_a_workflow_on_an_internal_address_is_refused_unless_allowed(
    planner_settings: PlannerSettings,
    signing_key: Ed25519PrivateKey,
    tenant: UUID,
    identity_for: IdentityFor,
    rows: Rows,
    url: str,
) -> None:
    strict = planner_settings.model_copy(update={"allow_private_destinations": False})

    async with trusting_client(create_app(strict), signing_key) as client:
        response = await _put_target(client, identity_for(tenant, "owner"), url)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "webhook_url"]
    assert await rows.target(tenant) is None
