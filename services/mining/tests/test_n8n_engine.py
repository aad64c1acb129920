"""``n8n`` sources (``mining.service.n8n``): a queued job holds its credits and is dispatched,
signed, to the workspace's workflow; the workflow's pages become leads, each page once,
checked whole; the job ends when every page up to the final one arrived, or at the
deadline with what did.

A real HTTP server on 127.0.0.1 stands in for the workflow and a NATS micro service for
billing. The sender is called one pass at a time and the sweeper's steps directly, so
nothing depends on timing. The database is shared by the whole session and a pass looks at
every tenant's jobs, so assertions only look at the test's own jobs (what reached the
workflow is matched by ``X-BAI-Event-Id``, the job's id).
"""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import httpx
import pytest
from cryptography.fernet import Fernet
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, update
from sqlmodel import col

from bai_contracts import CallbackReceived, ExtractionProgressed, callback_subject
from bai_platform.db import Database
from bai_platform.dispatching import dispatch_pass
from bai_platform.envelope import Envelope, new_event
from bai_platform.safe_fetch import SafeFetcher
from bai_platform.webhooks import WebhookDispatcher, verify_signature
from bai_platform.worker import WorkerContext
from bai_testing.billing import BillingStandIn
from bai_testing.sites import Site, website
from bai_testing.workflows import Dispatched, Workflow, workflow_server
from mining.events import on_workflow_callback
from mining.models import ExtractionJob, Lead, outbox
from mining.service import n8n
from mining.service.crawler import Crawler
from mining.service.runner import JobRunner
from mining.settings import MiningSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]
pytestmark = pytest.mark.usefixtures("end_the_tests_jobs")

SECRET = "n8n-mining-secret-0123456789"
DEADLINE_SECONDS = 900
PARAMS = {"query": "coffee shops", "city": "Madrid", "country": "ES"}


# ---- the workspace and its jobs ----------------------------------------------------------
@pytest.fixture
async def workflow() -> AsyncIterator[Workflow]:
    async with workflow_server() as serving:
        yield serving


UseWorkflow = Callable[..., Awaitable[None]]


@pytest.fixture
def use_workflow(
    private_client: httpx.AsyncClient, identity_for: IdentityFor, tenant: UUID, workflow: Workflow
) -> UseWorkflow:
    """The workspace's owner points mining at the stand-in workflow."""

    async def put(**body: Any) -> None:
        body = {
            "webhook_url": workflow.url,
            "secret": SECRET,
            "deadline_seconds": DEADLINE_SECONDS,
        } | body
        response = await private_client.put(
            "/v1/mining/workflow", json=body, headers=identity_for(tenant, "owner")
        )
        assert response.status_code == 200, response.text

    return put


NewJob = Callable[..., Awaitable[str]]


@pytest.fixture
def new_job(private_client: httpx.AsyncClient, identity_for: IdentityFor, tenant: UUID) -> NewJob:
    async def create(max_pages: int = 5, params: dict[str, Any] | None = None) -> str:
        body = {
            "source": {"type": "n8n", "params": PARAMS if params is None else params},
            "limits": {"max_pages": max_pages},
        }
        response = await private_client.post(
            "/v1/mining/jobs", json=body, headers=identity_for(tenant, "editor")
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    return create


async def job_of(db: Database, job_id: str) -> ExtractionJob:
    async with db.transaction() as session:
        return await session.get_one(ExtractionJob, job_id)


async def change_job(db: Database, job_id: str, **values: Any) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(ExtractionJob).where(col(ExtractionJob.id) == job_id).values(values)
        )


async def leads_of(db: Database, job_id: str) -> list[Lead]:
    async with db.transaction() as session:
        query = select(Lead).where(col(Lead.job_id) == job_id).order_by(col(Lead.id))
        return list((await session.scalars(query)).all())


async def progress_of(db: Database, job_id: str) -> list[ExtractionProgressed]:
    """What was announced about the job, in order (live events show it)."""
    async with db.transaction() as session:
        rows = (await session.execute(select(outbox.c.payload).order_by(outbox.c.created_at))).all()
    envelopes = [Envelope.model_validate_json(row.payload) for row in rows]
    return [e.payload(ExtractionProgressed) for e in envelopes if e.subject == job_id]


def sent_for(workflow: Workflow, job_id: str) -> list[Dispatched]:
    return [d for d in workflow.received if d.headers.get("x-bai-event-id") == job_id]


# ---- the sender, one pass at a time ------------------------------------------------------
# One pass of the n8n worker task: start queued jobs, send due ones, charge ended ones.
OnePass = Callable[[], Awaitable[None]]
SenderFor = Callable[..., OnePass]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def sender_for(
    http: httpx.AsyncClient,
    mining_settings: MiningSettings,
    mining_db: Database,
    nats_client: NatsClient,
    workflow_box: Fernet,
    billing: BillingStandIn,
) -> SenderFor:
    """A sender on the session's database; ``overrides`` change its settings. Its breaker
    never opens (other tests' leftover jobs may go to the same host)."""

    def build(**overrides: Any) -> OnePass:
        settings = mining_settings.model_copy(
            update={"dispatch_timeout_seconds": 5.0, "public_base_url": "https://bai.example"}
            | overrides
        )
        ctx = WorkerContext(
            settings=settings, db=mining_db, nc=nats_client, js=nats_client.jetstream()
        )
        webhooks = WebhookDispatcher(
            client=http,
            timeout_seconds=settings.dispatch_timeout_seconds,
            failure_threshold=1000,
            allow_private=True,  # the stand-in workflow listens on 127.0.0.1
        )
        return partial(dispatch_pass, ctx, webhooks, jobs=n8n.N8nJobs.of(settings, workflow_box))

    return build


@pytest.fixture
def sender(sender_for: SenderFor) -> OnePass:
    return sender_for()


Dispatched_ = Callable[..., Awaitable[str]]


@pytest.fixture
def dispatched(
    mining_db: Database, use_workflow: UseWorkflow, new_job: NewJob, sender: OnePass
) -> Dispatched_:
    """A job of the test's tenant that its workflow took; it waits for the pages."""

    async def make(**job: Any) -> str:
        await use_workflow()
        job_id = await new_job(**job)
        await sender()
        taken = await job_of(mining_db, job_id)
        assert (taken.state, taken.dispatch) == ("running", "sent"), taken.problems
        return job_id

    return make


CallBack = Callable[..., Awaitable[None]]


@pytest.fixture
def call_back(mining_db: Database, tenant: UUID) -> CallBack:
    """A callback the gateway verified, handed to mining as its consumer would."""

    async def handle(job_id: str, tenant_id: UUID | None = None, **payload: Any) -> None:
        event = CallbackReceived(
            job_id=job_id, payload={"job_id": job_id, **payload}, verified_by="signature"
        )
        envelope = new_event(
            event,
            source="gateway",
            tenant_id=tenant_id or tenant,
            subject=job_id,
            event_type=callback_subject("mining"),
        )
        async with mining_db.transaction() as session:
            await on_workflow_callback(session, envelope)

    return handle


# Sweeps and records read no secret and send nothing: these jobs' box and settings are
# never used.
SWEPT = n8n.N8nJobs(
    box=Fernet(Fernet.generate_key()), callback_base="", max_attempts=1, backoff=(1.0, 1.0)
)


async def expire(db: Database, job_id: str) -> None:
    """The job's deadline passed; one sweep."""
    await change_job(db, job_id, deadline_at=datetime.now(UTC) - timedelta(seconds=1))
    async with db.transaction() as session:
        await SWEPT.expire_overdue(session)


ACME = {
    "organisation": "Acme Coffee",
    "website": "https://acme.example/",
    "emails": ["info@acme.example"],
}
BEANS = {"organisation": "Beans & Co", "phones": ["+34 912 345 678"]}
CUPS = {"organisation": "Cups", "website": "cups.example", "emails": ["hola@cups.example"]}


# ---- dispatch ----------------------------------------------------------------------------
async def test_a_queued_job_holds_its_credits_and_is_dispatched_once_signed(
    mining_db: Database,
    tenant: UUID,
    workflow: Workflow,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    sender: OnePass,
    billing: BillingStandIn,
) -> None:
    await use_workflow()
    job_id = await new_job(max_pages=7)

    await sender()
    await sender()

    [got] = sent_for(workflow, job_id)
    verify_signature(
        secret=SECRET,
        timestamp=got.headers["x-bai-timestamp"],
        signature=got.headers["x-bai-signature"],
        body=got.body,
        now=time.time(),
    )
    assert "x-bai-secret" not in got.headers
    assert got.json() == {
        "job_id": job_id,
        "kind": "extract",
        "tenant_id": str(tenant),
        "callback_url": f"https://bai.example/v1/webhooks/n8n/{job_id}",
        "params": PARAMS,
        "limits": {"max_pages": 7, "max_items_per_page": 500},
    }
    job = await job_of(mining_db, job_id)
    assert (job.state, job.credits, job.dispatch, job.attempts) == (
        "running",
        "reserved",
        "sent",
        1,
    )
    assert job.dispatched_at is not None
    assert job.deadline_at == job.dispatched_at + timedelta(seconds=DEADLINE_SECONDS)
    [(operation, asked)] = billing.of(job_id)
    assert (operation, asked["kind"], asked["amount"]) == ("reserve", "extraction_pages", 7)
    assert [p.state for p in await progress_of(mining_db, job_id)] == ["running"]


async def test_a_workflow_that_asks_for_it_gets_the_secret_header_too(
    workflow: Workflow, use_workflow: UseWorkflow, new_job: NewJob, sender: OnePass
) -> None:
    await use_workflow(accept_secret_header=True)
    job_id = await new_job()

    await sender()

    [got] = sent_for(workflow, job_id)
    assert got.headers["x-bai-secret"] == SECRET


async def test_a_failing_workflow_is_tried_again_then_the_job_fails_with_the_reason(
    mining_db: Database,
    workflow: Workflow,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    sender_for: SenderFor,
    billing: BillingStandIn,
) -> None:
    sender = sender_for(dispatch_max_attempts=2, dispatch_backoff_base_seconds=30.0)
    await use_workflow()
    job_id = await new_job()
    workflow.status = 503

    await sender()
    waiting = await job_of(mining_db, job_id)
    await sender()  # its backoff is not over: nothing goes out
    await change_job(mining_db, job_id, next_attempt_at=datetime.now(UTC))
    await sender()

    assert (waiting.state, waiting.dispatch, waiting.attempts) == ("running", "pending", 1)
    assert waiting.next_attempt_at is not None
    assert len(sent_for(workflow, job_id)) == 2
    failed = await job_of(mining_db, job_id)
    assert failed.state == "failed"
    assert failed.problems == [
        "the workflow did not take the job after 2 attempts: n8n answered 503: workflow failed"
    ]
    assert failed.credits == "committed"
    commit = [body for op, body in billing.of(job_id) if op == "commit"]
    assert commit == [
        {
            "tenant_id": str(failed.tenant_id),
            "kind": "extraction_pages",
            "reference": job_id,
            "amount": 0,
        }
    ]


async def test_a_refusal_fails_the_job_at_once(
    mining_db: Database,
    workflow: Workflow,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    sender: OnePass,
) -> None:
    await use_workflow()
    job_id = await new_job()
    workflow.status = 404

    await sender()

    job = await job_of(mining_db, job_id)
    assert len(sent_for(workflow, job_id)) == 1
    assert (job.state, job.problems) == (
        "failed",
        ["the workflow did not take the job after 1 attempt: n8n answered 404: workflow failed"],
    )


async def test_a_job_whose_workflow_was_removed_fails_without_holding_credits(
    mining_db: Database,
    private_client: httpx.AsyncClient,
    identity_for: IdentityFor,
    tenant: UUID,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    sender: OnePass,
    billing: BillingStandIn,
) -> None:
    await use_workflow()
    job_id = await new_job()
    await private_client.delete("/v1/mining/workflow", headers=identity_for(tenant, "owner"))

    await sender()

    job = await job_of(mining_db, job_id)
    assert (job.state, job.credits) == ("failed", "none")
    assert "PUT /v1/mining/workflow" in job.problems[0]
    assert billing.of(job_id) == []


async def test_a_job_billing_refuses_fails_saying_why_and_goes_nowhere(
    mining_db: Database,
    workflow: Workflow,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    sender: OnePass,
    billing: BillingStandIn,
) -> None:
    billing.refuse = True
    await use_workflow()
    job_id = await new_job()

    await sender()

    job = await job_of(mining_db, job_id)
    assert (job.state, job.credits) == ("failed", "none")
    assert job.problems == ["not enough extraction credits: 20 needed, 3 left"]
    assert sent_for(workflow, job_id) == []


async def test_a_job_left_mid_dispatch_goes_out_again(
    mining_db: Database, workflow: Workflow, dispatched: Dispatched_, sender: OnePass
) -> None:
    job_id = await dispatched()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await change_job(mining_db, job_id, dispatch="sending", next_attempt_at=long_ago)

    async with mining_db.transaction() as session:
        await SWEPT.recover_stuck(session, older_than=timedelta(seconds=30))
    await sender()

    sent = sent_for(workflow, job_id)
    assert len(sent) == 2
    assert sent[0].headers["x-bai-event-id"] == sent[1].headers["x-bai-event-id"] == job_id
    assert (await job_of(mining_db, job_id)).dispatch == "sent"


async def test_website_jobs_and_n8n_jobs_are_each_run_by_their_own_runner(
    mining_db: Database,
    private_client: httpx.AsyncClient,
    identity_for: IdentityFor,
    tenant: UUID,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    sender: OnePass,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    fixture = Site(pages={"/": "<html><body>hello@acme.example</body></html>"})
    await use_workflow()

    async def crawl_job(created_at: datetime) -> str:
        body = {"source": {"type": "website", "urls": [f"{site.base}/"]}}
        response = await private_client.post(
            "/v1/mining/jobs", json=body, headers=identity_for(tenant, "editor")
        )
        job_id: str = response.json()["id"]
        await change_job(mining_db, job_id, created_at=created_at)
        return job_id

    async with website(fixture) as site, httpx.AsyncClient() as http:
        n8n_job = await new_job()
        # First in the queue, the n8n job first of all.
        await change_job(mining_db, n8n_job, created_at=datetime(2000, 1, 1, tzinfo=UTC))
        crawled = await crawl_job(datetime(2000, 1, 2, tzinfo=UTC))
        fetcher = SafeFetcher(client=http, allow_private=True)
        crawler = Crawler(fetcher, user_agent="BAI-test", delay_seconds=0)
        runner = JobRunner(db=mining_db, nc=nats_client, crawler=crawler)

        assert await runner.run_next()
        after_crawl = await job_of(mining_db, n8n_job)
        waiting = await crawl_job(datetime(1999, 1, 1, tzinfo=UTC))
        await sender()

    assert after_crawl.state == "queued"
    assert (await job_of(mining_db, crawled)).state == "succeeded"
    assert (await job_of(mining_db, n8n_job)).dispatch == "sent"
    assert (await job_of(mining_db, waiting)).state == "queued"
    assert "/" in fixture.requested


async def test_verification_names_the_jobs_tenant_and_secret_and_only_for_n8n_jobs(
    mining_db: Database,
    private_client: httpx.AsyncClient,
    identity_for: IdentityFor,
    tenant: UUID,
    use_workflow: UseWorkflow,
    new_job: NewJob,
    workflow_box: Fernet,
) -> None:
    await use_workflow(accept_secret_header=True)
    job_id = await new_job()
    crawl = await private_client.post(
        "/v1/mining/jobs",
        json={"source": {"type": "website", "urls": ["https://example.org/"]}},
        headers=identity_for(tenant, "editor"),
    )

    async with mining_db.transaction() as session:
        jobs = replace(SWEPT, box=workflow_box)
        known = await jobs.signer_for(session, job_id)
        crawled = await jobs.signer_for(session, crawl.json()["id"])
        unknown = await jobs.signer_for(session, "ext_nosuchjob00000000000")

    assert known is not None
    assert (known.tenant_id, known.secret) == (tenant, SECRET)
    assert known.accept_secret_header
    assert crawled is None
    assert unknown is None


# ---- pages -------------------------------------------------------------------------------
async def test_pages_in_order_become_deduplicated_leads_and_the_job_succeeds(
    mining_db: Database,
    dispatched: Dispatched_,
    call_back: CallBack,
    sender: OnePass,
    billing: BillingStandIn,
) -> None:
    job_id = await dispatched(max_pages=5)

    await call_back(job_id, page=1, items=[ACME, BEANS], final=False)
    midway = await job_of(mining_db, job_id)
    await call_back(
        job_id,
        page=2,
        items=[{"emails": ["INFO@acme.example"], "phones": ["+34 600 000 001"]}, CUPS],
        final=True,
    )
    await sender()  # the ended job is charged

    assert (midway.state, midway.pages_fetched, midway.items_found) == ("running", 1, 2)
    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_fetched, job.items_found, job.problems) == (
        "succeeded",
        2,
        3,
        [],
    )
    acme, beans, cups = await leads_of(mining_db, job_id)
    assert (acme.organisation, acme.domain) == ("Acme Coffee", "acme.example")
    assert (acme.emails, acme.phones) == (["info@acme.example"], ["+34600000001"])
    assert acme.pages == ["n8n:page:1", "n8n:page:2"]
    assert (beans.phones, beans.domain) == (["+34912345678"], None)
    assert (cups.domain, cups.pages) == ("cups.example", ["n8n:page:2"])
    announced = [
        (p.state, p.pages_fetched, p.items_found) for p in await progress_of(mining_db, job_id)
    ]
    assert announced == [("running", 0, 0), ("running", 1, 2), ("succeeded", 2, 3)]
    assert (
        "commit",
        {
            "tenant_id": str(job.tenant_id),
            "kind": "extraction_pages",
            "reference": job_id,
            "amount": 2,
        },
    ) in billing.of(job_id)
    assert job.credits == "committed"


async def test_pages_may_come_in_any_order_and_the_job_ends_when_none_is_missing(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched(max_pages=5)

    await call_back(job_id, page=3, items=[CUPS], final=True)
    await call_back(job_id, page=2, items=[BEANS])
    waiting = await job_of(mining_db, job_id)
    await call_back(job_id, page=1, items=[ACME])

    assert (waiting.state, waiting.pages_accepted, waiting.final_page) == ("running", [2, 3], 3)
    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_fetched, job.items_found) == ("succeeded", 3, 3)


async def test_a_repeated_page_changes_nothing(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched()
    await call_back(job_id, page=1, items=[ACME])
    before = await progress_of(mining_db, job_id)

    await call_back(job_id, page=1, items=[ACME, BEANS, CUPS])

    job = await job_of(mining_db, job_id)
    assert (job.pages_fetched, job.items_found, job.problems) == (1, 1, [])
    assert [lead.organisation for lead in await leads_of(mining_db, job_id)] == ["Acme Coffee"]
    assert await progress_of(mining_db, job_id) == before


@pytest.mark.parametrize(
    ("callback", "problem"),
    [
        (
            {"page": 2, "items": [CUPS, {"emails": ["not-an-email"]}]},
            "page 2 rejected: items[1].emails[0]: not an email address",
        ),
        ({"page": 2, "items": "CUPS"}, "page 2 rejected: items: Input should be a valid list"),
        (
            {"page": 2, "items": [{"data": {"x": 1}}]},
            "page 2 rejected: items[0]: needs at least one of emails, phones, website or "
            "organisation",
        ),
        ({"page": "2", "items": [CUPS]}, "a callback was rejected: page: Input should be a valid"),
        ({"page": -1, "items": [CUPS]}, "page -1 rejected: page: Input should be greater than"),
        ({"items": [CUPS]}, "a callback was rejected: page: Field required"),
        (
            {"page": 2, "items": [CUPS] * 501},
            "page 2 rejected: items: List should have at most 500 items",
        ),
        (
            {"page": 2, "items": [{**CUPS, "emails": "a@b.example"}]},
            "page 2 rejected: items[0].emails: Input",
        ),
        (
            {"page": 2, "items": [{**CUPS, "name": "Cups"}]},
            "page 2 rejected: items[0].name: Extra inputs",
        ),
        (
            {"page": 2, "items": [{**CUPS, "organisation": "C\x00"}]},
            "page 2 rejected: contains NUL",
        ),
        ({"status": "done"}, 'a callback was rejected: status must be "failed"'),
    ],
    ids=[
        "bad-email",
        "items-not-a-list",
        "item-with-nothing",
        "page-as-text",
        "negative-page",
        "no-page",
        "too-many-items",
        "emails-not-a-list",
        "unknown-item-field",
        "nul",
        "unknown-status",
    ],
)
async def test_a_malformed_page_changes_nothing_and_the_job_says_why(
    mining_db: Database,
    dispatched: Dispatched_,
    call_back: CallBack,
    callback: dict[str, Any],
    problem: str,
) -> None:
    job_id = await dispatched()
    await call_back(job_id, page=1, items=[ACME])
    before = await job_of(mining_db, job_id)
    announced = await progress_of(mining_db, job_id)

    await call_back(job_id, **callback)

    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_accepted, job.pages_fetched, job.items_found, job.errors) == (
        "running",
        before.pages_accepted,
        before.pages_fetched,
        before.items_found,
        before.errors,
    )
    [said] = job.problems
    assert said.startswith(problem), said
    assert [lead.organisation for lead in await leads_of(mining_db, job_id)] == ["Acme Coffee"]
    assert await progress_of(mining_db, job_id) == announced


async def test_a_rejected_page_may_be_sent_again_corrected(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched()
    await call_back(job_id, page=1, items=[{**ACME, "emails": ["info(at)acme"]}], final=True)

    await call_back(job_id, page=1, items=[ACME], final=True)

    job = await job_of(mining_db, job_id)
    assert (job.state, job.items_found) == ("succeeded", 1)
    assert job.problems == ["page 1 rejected: items[0].emails[0]: not an email address"]


async def test_pages_beyond_the_limit_or_the_final_page_are_rejected_with_the_reason(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched(max_pages=3)
    await call_back(job_id, page=3, items=[ACME])

    await call_back(job_id, page=4, items=[BEANS])
    await call_back(job_id, page=2, items=[BEANS], final=True)
    await call_back(job_id, page=3, items=[], final=True)  # a repeat of page 3: nothing
    await call_back(job_id, page=1, items=[CUPS])

    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_accepted, job.items_found) == ("running", [1, 3], 2)
    assert job.problems == [
        "page 4 rejected: the job takes at most 3 pages (limits.max_pages)",
        "page 2 rejected: it is marked final, but page 3 already arrived",
    ]


async def test_a_page_after_the_final_one_is_rejected(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched(max_pages=5)
    await call_back(job_id, page=2, items=[ACME], final=True)

    await call_back(job_id, page=3, items=[BEANS])

    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_accepted) == ("running", [2])
    assert job.problems == ["page 3 rejected: page 2 was the final page"]


async def test_items_merge_across_pages_into_the_jobs_leads(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched(params={"country": "ES"})
    await call_back(
        job_id,
        page=1,
        items=[ACME, {"organisation": "Solo Bar", "addresses": ["Calle Luna 2"]}],
    )

    await call_back(
        job_id,
        page=2,
        items=[
            {
                "website": "http://www.acme.example/contact",
                "phones": ["912 345 678"],
                "source_url": "https://maps.example/acme",
                "data": {"rating": 4.5},
            },
            {"phones": ["+34912345678"], "socials": ["https://instagram.com/acme"]},
            {"organisation": "SOLO BAR", "data": {"rating": 3.9}},
        ],
        final=True,
    )

    acme, solo = await leads_of(mining_db, job_id)
    assert (acme.domain, acme.emails, acme.phones) == (
        "acme.example",
        ["info@acme.example"],
        ["+34912345678"],
    )
    assert acme.socials == ["https://instagram.com/acme"]
    assert acme.pages == ["n8n:page:1", "https://maps.example/acme", "n8n:page:2"]
    assert acme.data == {"rating": 4.5}
    assert (solo.organisation, solo.addresses, solo.data) == (
        "Solo Bar",
        ["Calle Luna 2"],
        {"rating": 3.9},
    )
    job = await job_of(mining_db, job_id)
    assert (job.state, job.items_found) == ("succeeded", 2)


async def test_leads_of_another_job_are_never_merged_into(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    first, second = await dispatched(), await dispatched()

    await call_back(first, page=1, items=[ACME], final=True)
    await call_back(second, page=1, items=[ACME], final=True)

    [one] = await leads_of(mining_db, first)
    [other] = await leads_of(mining_db, second)
    assert one.id != other.id
    assert one.pages == other.pages == ["n8n:page:1"]


# ---- endings -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pages", "state"), [(0, "failed"), (1, "partial")], ids=["no-pages", "some-pages"]
)
async def test_a_failure_the_workflow_reports_ends_the_job_with_its_reason(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack, pages: int, state: str
) -> None:
    job_id = await dispatched()
    for number in range(1, pages + 1):
        await call_back(job_id, page=number, items=[ACME])

    await call_back(job_id, status="failed", error="Google Places quota exceeded")
    await call_back(job_id, page=2, items=[BEANS], final=True)  # too late

    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_fetched) == (state, pages)
    assert job.problems == ["the workflow reported a failure: Google Places quota exceeded"]
    assert (await progress_of(mining_db, job_id))[-1].state == state


async def test_a_cancelled_job_ignores_later_callbacks(
    mining_db: Database,
    private_client: httpx.AsyncClient,
    identity_for: IdentityFor,
    tenant: UUID,
    dispatched: Dispatched_,
    call_back: CallBack,
) -> None:
    job_id = await dispatched()
    await call_back(job_id, page=1, items=[ACME])

    cancelled = await private_client.post(
        f"/v1/mining/jobs/{job_id}/cancel", headers=identity_for(tenant, "editor")
    )
    await call_back(job_id, page=2, items=[BEANS], final=True)

    assert (cancelled.status_code, cancelled.json()["state"]) == (202, "cancelled")
    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_fetched, job.items_found) == ("cancelled", 1, 1)
    assert len(await leads_of(mining_db, job_id)) == 1
    assert (await progress_of(mining_db, job_id))[-1].state == "cancelled"


async def test_a_callback_from_another_workspace_changes_nothing(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack, tenant: UUID
) -> None:
    job_id = await dispatched()

    await call_back(job_id, UUID(int=tenant.int ^ 1), page=1, items=[ACME], final=True)

    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_fetched, job.problems) == ("running", 0, [])


async def test_a_page_before_the_dispatch_is_recorded_counts_and_starts_the_deadline(
    mining_db: Database, dispatched: Dispatched_, call_back: CallBack
) -> None:
    job_id = await dispatched()
    await change_job(mining_db, job_id, dispatch="sending", deadline_at=None)

    await call_back(job_id, page=1, items=[ACME])
    async with mining_db.transaction() as session:
        await SWEPT.record_dispatched(session, job_id=job_id)

    job = await job_of(mining_db, job_id)
    assert (job.dispatch, job.pages_fetched) == ("sent", 1)
    assert job.deadline_at is not None


@pytest.mark.parametrize(
    ("pages", "state", "problem"),
    [
        ([], "failed", "the workflow did not call back in time"),
        ([1], "partial", "the workflow did not finish in time: 1 page(s) arrived, no final page"),
        (
            [1, 4],
            "partial",
            "the workflow did not finish in time: pages 2, 3 of 4 missing",
        ),
    ],
    ids=["no-pages", "no-final-page", "missing-pages"],
)
async def test_at_the_deadline_the_job_ends_with_what_arrived(
    mining_db: Database,
    dispatched: Dispatched_,
    call_back: CallBack,
    pages: list[int],
    state: str,
    problem: str,
) -> None:
    job_id = await dispatched()
    for number in pages:
        await call_back(job_id, page=number, items=[ACME], final=number == 4)

    await expire(mining_db, job_id)
    await call_back(job_id, page=2, items=[BEANS])  # too late

    job = await job_of(mining_db, job_id)
    assert (job.state, job.pages_fetched, job.problems) == (state, len(pages), [problem])
    assert job.finished_at is not None
