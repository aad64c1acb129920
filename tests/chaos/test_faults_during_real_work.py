"""Chaos: faults injected while real work runs through the edge, then the promises checked.

A stack of its own runs two api and two worker processes per service behind Traefik, with
the supervisor's watchdog on, as ``BAI_REPLICAS=2 make run`` does.

**Work**, all of it through the edge and all at once:

- eight months of content (744 posts): four written by the built-in engine, four by the
  workspaces' n8n workflow (a local stand-in that answers each job it is handed with a signed
  callback after a pause, and sends it again until it is accepted, as n8n's Retry On Fail);
- a mining job crawling a 24-page site served slowly;
- a stream of Stripe events for three workspaces (invoices, refunds, plan changes, notices,
  30 % duplicates, shuffled), each delivered again until it is answered 200, as Stripe does;
- readers polling calendars, balances and jobs.

**Faults**, in turn, each while two more months are being laid out and written: kill -9 of
a worker replica (creator's), kill -9 of an api replica (the gateway's, which decides every
request at the edge), a restart of NATS (its JetStream store kept) and a restart of
PostgreSQL. After each, the test waits until every process answers /readyz again.

**After recovery** (``invariants``): every post ``draft_ready`` with one generation job and
one content version; credits exact (balance = ledger, nothing reserved, one commit per job);
the mining job ended with what it fetched charged; each Stripe workspace's ledger exactly
what its events say; every outbox empty, every consumer caught up, no dead letters.

The run prints its fault log, how the edge answered each kind of client in each phase, and
the invariants it checked (``make chaos`` shows them).
"""

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from bai_platform.devstack import Stack
from bai_platform.webhooks import sign
from bai_testing.sites import Site, website
from bai_testing.stripe_events import signed
from bai_testing.workflows import Workflow, workflow_server

from ..integration.conftest import new_brand, new_campaign, replicated_stack
from . import invariants
from .conftest import Account, sign_up
from .faults import FaultLog, deliver, kill, recovered, restart
from .stripe_books import WEBHOOK, Books, history, settled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 1405
FAULTS = (
    kill("creator-worker"),
    kill("gateway-api"),
    restart("nats"),
    restart("postgres"),
)
# A post a day on each channel in December: 124 posts for the built-in engine, 62 for n8n.
CHANNELS = {"builtin": ["instagram", "linkedin", "x", "facebook"], "n8n": ["x", "blog"]}
DECEMBER_DAYS = 31
STARTER = {"posts": 1_000, "extraction_pages": 1_000, "chat_messages": 0}
SITE_PAGES, PAGE_DELAY = 24, 0.5
STRIPE_WORKSPACES, STRIPE_MONTHS, STRIPE_RATE = 3, 6, 3.0  # events a second
LEAD_SECONDS = 1.0  # work in flight before each fault
FINISH_SECONDS = 180.0  # every post written, the crawl ended, once the last fault is over
LIMITS = {
    "ip_auth": {"limit": 1_000_000},
    "credential": {"limit": 1_000_000},
    "tenant_plans": {"starter": {"limit": 1_000_000}},
}
ENV = {
    "BAI_STARTER_GRANT": json.dumps(STARTER),
    "BAI_ALLOW_PRIVATE_DESTINATIONS": "true",  # the n8n stand-in listens on 127.0.0.1
    "BAI_CRAWL_ALLOWED_HOSTS": '["127.0.0.1"]',
    "BAI_CRAWL_DELAY_SECONDS": "0",
    "BAI_JOB_POLL_SECONDS": "0.5",
    "BAI_SWEEP_SECONDS": "1",
}


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[Stack]:
    with replicated_stack(LIMITS, ENV) as stack:
        yield stack


@dataclass
class Month:
    account: Account
    campaign_id: str
    engine: str
    posts: int
    secret: str = ""


async def _month(edge: httpx.AsyncClient, workflow: Workflow, n: int, engine: str) -> Month:
    """A workspace with a December campaign not laid out yet (its engine set up)."""
    account = await sign_up(edge, f"Chaos {n}")
    channels = CHANNELS[engine]
    month = Month(account, "", engine, len(channels) * DECEMBER_DAYS)
    if engine == "n8n":
        month.secret = f"chaos-workflow-secret-{n:02d}-0123456789"
        body = {"type": "n8n", "webhook_url": workflow.url, "secret": month.secret}
        answer = await edge.put("/v1/creator/engine", json=body, headers=account.headers)
        assert answer.status_code == 200, answer.text
    brand_id = await new_brand(edge, account, f"Chaos {n}")
    cadence = {channel: {"per_day": 1} for channel in channels}
    month.campaign_id = await new_campaign(edge, account, brand_id, cadence)
    return month


async def _schedule(edge: httpx.AsyncClient, month: Month, log: FaultLog) -> None:
    """Lay the month out, patiently: laying a month out twice creates nothing new."""
    path = f"/v1/planner/campaigns/{month.campaign_id}/schedule"
    body = json.dumps({"month": "2026-12"}).encode()
    headers = {**month.account.headers, "Content-Type": "application/json"}
    answer = await deliver(
        edge, "POST", path, sign=lambda: (body, headers), want=202, who="schedule", log=log
    )
    assert answer.status_code == 202, answer.text
    log.note(f"scheduled {month.posts} posts ({month.engine}) for {month.account.tenant_id[:8]}")


# ---- the n8n workflow stand-in's part: a signed callback for each job it is handed --------
async def _play_workflow(
    edge: httpx.AsyncClient,
    workflow: Workflow,
    months: list[Month],
    log: FaultLog,
    stop: asyncio.Event,
) -> None:
    """Answer every job handed to the workflow (a job handed twice is answered twice)."""
    secrets = {m.account.tenant_id: m.secret for m in months if m.engine == "n8n"}
    rng = random.Random(SEED)
    answering: list[asyncio.Task[None]] = []
    seen = 0
    while not stop.is_set():
        while seen < len(workflow.received):
            handed = workflow.received[seen].json()
            seen += 1
            secret = secrets[handed["tenant_id"]]
            delay = rng.uniform(0.2, 2.0)  # the workflow's own work
            answering.append(asyncio.create_task(_call_back(edge, handed, secret, delay, log)))
        await asyncio.sleep(0.05)
    await asyncio.gather(*answering)


async def _call_back(
    edge: httpx.AsyncClient, handed: dict[str, Any], secret: str, delay: float, log: FaultLog
) -> None:
    await asyncio.sleep(delay)
    body = json.dumps(
        {
            "job_id": handed["job_id"],
            "status": "completed",
            "content": {"text": f"Chaos post {handed['post_id'][:8]}", "hashtags": ["coffee"]},
        }
    ).encode()
    path = handed["callback_url"].removeprefix(str(edge.base_url).rstrip("/"))

    def signed_now() -> tuple[bytes, dict[str, str]]:
        stamp = int(time.time())
        return body, {
            "Content-Type": "application/json",
            "X-BAI-Timestamp": str(stamp),
            "X-BAI-Signature": sign(secret, stamp, body),
        }

    done = await deliver(edge, "POST", path, sign=signed_now, want=202, who="n8n", log=log)
    assert done.status_code == 202, done.text


# ---- Stripe, delivering each event until it is answered 200 -------------------------------
async def _stripe(edge: httpx.AsyncClient, books: list[Books], secret: str, log: FaultLog) -> None:
    rng = random.Random(SEED)
    events = [e for b in books for e in b.events]
    events += rng.choices(events, k=len(events) * 3 // 10)  # Stripe delivering again
    rng.shuffle(events)
    log.note(f"Stripe: {len(events)} deliveries for {len(books)} workspaces begin")

    async def one(n: int, event: dict[str, Any]) -> None:
        await asyncio.sleep(n / STRIPE_RATE)

        def signed_now() -> tuple[bytes, dict[str, str]]:
            raw, signature = signed(event, secret)
            return raw, {"Content-Type": "application/json", "Stripe-Signature": signature}

        done = await deliver(
            edge, "POST", WEBHOOK, sign=signed_now, want=200, who="stripe", log=log
        )
        assert done.status_code == 200, done.text

    await asyncio.gather(*(one(n, e) for n, e in enumerate(events)))
    log.note("Stripe: every delivery answered 200")


# ---- readers ----------------------------------------------------------------------------
async def _read(
    edge: httpx.AsyncClient, months: list[Month], log: FaultLog, stop: asyncio.Event
) -> None:
    rng = random.Random()
    while not stop.is_set():
        month = rng.choice(months)
        path = rng.choice(
            [
                f"/v1/planner/campaigns/{month.campaign_id}",
                f"/v1/planner/campaigns/{month.campaign_id}/posts?month=2026-12",
                "/v1/billing/balance",
                "/v1/mining/schedules",
            ]
        )
        try:
            log.answered("reader", await edge.get(path, headers=month.account.headers))
        except httpx.HTTPError as exc:
            log.answered("reader", exc)
        await asyncio.sleep(0.2)


# ---- mining -----------------------------------------------------------------------------
def _site() -> Site:
    links = " ".join(f'<a href="/p{n}">page {n}</a>' for n in range(1, SITE_PAGES))
    pages = {"/": f"<html><head><title>Chaos Roasters</title></head><body>{links}</body></html>"}
    for n in range(1, SITE_PAGES):
        pages[f"/p{n}"] = (
            f"<html><body><p>Write to team{n}@chaos-roasters.example</p></body></html>"
        )
    return Site(pages=pages, delay=PAGE_DELAY)


async def _crawl(edge: httpx.AsyncClient, account: Account, base: str) -> str:
    created = await edge.post(
        "/v1/mining/jobs",
        json={
            "source": {"type": "website", "urls": [f"{base}/"]},
            "limits": {"max_pages": SITE_PAGES + 10, "max_depth": 2},
        },
        headers=account.headers,
    )
    assert created.status_code == 202, created.text
    job_id: str = created.json()["id"]
    return job_id


# ---- the run ----------------------------------------------------------------------------
async def _finished(db: asyncpg.Connection, tenants: list[UUID], posts: int, job_id: str) -> None:
    async with asyncio.timeout(FINISH_SECONDS):
        while True:
            ready = await db.fetchval(
                "SELECT count(*) FROM planner.posts WHERE tenant_id = ANY($1)"
                " AND state = 'draft_ready'",
                tenants,
            )
            crawl = await db.fetchval(
                "SELECT state FROM mining.extraction_jobs WHERE id = $1", job_id
            )
            if ready == posts and crawl not in ("queued", "running"):
                return
            await asyncio.sleep(0.5)


async def test_faults_during_real_work_lose_nothing_and_charge_exactly(chaos_stack: Stack) -> None:
    stack, log = chaos_stack, FaultLog()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with (
        httpx.AsyncClient(base_url=stack.edge_url, timeout=30, limits=limits) as edge,
        workflow_server() as workflow,
        website(_site()) as site,
    ):
        months = [
            await _month(edge, workflow, n, "builtin" if n % 2 == 0 else "n8n")
            for n in range(2 * len(FAULTS))
        ]
        run = uuid.uuid4().hex[:8]
        rng = random.Random(SEED)
        stripe_accounts = [
            await sign_up(edge, f"Chaos Stripe {n}") for n in range(STRIPE_WORKSPACES)
        ]
        books = [
            history(a, rng, run, n, months=STRIPE_MONTHS) for n, a in enumerate(stripe_accounts)
        ]
        for b in books:
            b.starter = dict(STARTER)
        miner = months[0].account
        job_id = await _crawl(edge, miner, site.base)
        log.note(f"mining job {job_id}: {SITE_PAGES} pages, {PAGE_DELAY} s each")

        stop = asyncio.Event()
        background = [
            asyncio.create_task(_play_workflow(edge, workflow, months, log, stop)),
            *(asyncio.create_task(_read(edge, months, log, stop)) for _ in range(4)),
        ]
        stripe = asyncio.create_task(
            _stripe(edge, books, stack.settings.stripe_webhook_secret, log)
        )
        for n, fault in enumerate(FAULTS):
            log.phase = fault.name
            for month in months[2 * n : 2 * n + 2]:
                await _schedule(edge, month, log)
            await asyncio.sleep(LEAD_SECONDS)
            await fault.inject(stack, log)
            await recovered(stack, log)
        log.phase = "after the faults"

        tenants = [UUID(m.account.tenant_id) for m in months]
        posts = sum(m.posts for m in months)
        db = await asyncpg.connect(stack.admin_dsn())
        try:
            await _finished(db, tenants, posts, job_id)
            await stripe
            log.note(f"all {posts} posts draft_ready and the crawl ended")
            stop.set()
            await asyncio.gather(*background)
            await invariants.quiet(stack, db, log.note)
            verdicts = invariants.Verdicts()
            verdicts.check("no answer was a 500", not log.count("500"), log.count("500"))
            await invariants.content(db, tenants, posts, verdicts)
            await _mining(db, job_id, UUID(miner.tenant_id), verdicts)
            everyone = tenants + [UUID(a.tenant_id) for a in stripe_accounts]
            await invariants.credits(db, everyone, verdicts)
            verdicts.check(
                "each Stripe workspace's ledger exactly what its events say",
                *await _stripe_settled(edge, books),
            )
            await invariants.messages(stack, db, verdicts)
        finally:
            await db.close()

    print("\n" + log.table() + "\n" + verdicts.table())
    if log.count("500"):
        print(_unhandled_errors(stack))
    assert not verdicts.failures, "\n".join(verdicts.failures)


def _unhandled_errors(stack: Stack) -> str:
    """What the services logged for each 500 they answered: the tracebacks a 500 needs to be
    understood (a 500 is a defect: every expected failure has its own problem)."""
    found = []
    for log in sorted(stack.logs.glob("*-api.log")):
        lines = log.read_text(errors="replace").splitlines()
        for n, line in enumerate(lines):
            if "unhandled_error" in line or "Exception in ASGI application" in line:
                found.append(f"== {log.name}:{n + 1} ==\n" + "\n".join(lines[n : n + 40]))
    return "\n".join(found) or "(no unhandled_error in the services' logs)"


async def _stripe_settled(edge: httpx.AsyncClient, books: list[Books]) -> tuple[bool, object]:
    off = []
    for b in books:
        try:
            await settled(edge, b, within=60.0)
        except AssertionError as exc:
            off.append(str(exc))
    return not off, off or f"{len(books)} workspaces"


async def _mining(
    db: asyncpg.Connection, job_id: str, tenant: UUID, v: invariants.Verdicts
) -> None:
    job = await db.fetchrow(
        "SELECT state, pages_fetched, credits FROM mining.extraction_jobs WHERE id = $1", job_id
    )
    assert job is not None
    found = dict(job)
    v.check(
        "the crawl succeeded, every page fetched, credits committed",
        found == {"state": "succeeded", "pages_fetched": SITE_PAGES, "credits": "committed"},
        found,
    )
    spent = await db.fetchval(
        "SELECT $2 - available FROM billing.credit_accounts WHERE tenant_id = $1"
        " AND kind = 'extraction_pages'",
        tenant,
        STARTER["extraction_pages"],
    )
    v.check("the crawl charged exactly the pages it fetched", spent == SITE_PAGES, spent)
