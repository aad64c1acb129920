"""An n8n callback storm through the edge, at about 200 callbacks a second.

Nine workspaces hand 104 generation jobs to their n8n workflows (one local stand-in), and
the test plays the workflows. Eight workspaces wait for their callbacks ten minutes; the
ninth only 30 s (the shortest deadline allowed), and its workflow stays silent until its
jobs have timed out.

First storm, shuffled with a fixed seed: each on-time job's result (most completed, some
failed), sent again 1 to 3 times as n8n's "Retry On Fail" does (the same body, signed
anew), forgeries (another workspace's secret, a body changed after signing, a timestamp
outside the five minutes either way, no signature, a ``v0`` signature) and bodies over the
1 MiB cap. Second storm, once every on-time job ended and the silent ones timed out: the
contrary result of each on-time job (a "failed" after its "completed" and the other way
round), its first result once more, the late results of the timed-out jobs (repeated),
more forgeries and oversized bodies.

Expected, as ``creator.service.engines.n8n`` says: forged 401 and oversized 413 (problem+json),
the rest 202; each distinct callback queued for creator once; each job's first result
applied once (one content version for a completed job, none for a failed one), contrary
results ignored; a late "completed" applied free of charge, a late "failed" ignored; the
credits of every job reserved once and then committed once (completed in time) or released
once (failed or timed out), so each balance is exact.
"""

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from bai_contracts import callback_subject
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.webhooks import sign
from bai_testing.workflows import Workflow, workflow_server

from .conftest import Account, sign_up
from .storm import PROBLEM_JSON, Report, Shot, send, storm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 2026
ON_TIME_WORKSPACES = 8
FAST_WORKSPACES = 2  # of those, whose workflows answer each job the moment they get it
POSTS, LATE_POSTS = 12, 8  # a post a day on X from 1 December
LATE_DEADLINE = 30  # seconds: the shortest a workspace may choose
RATE, IN_FLIGHT = 200, 50
OVERSIZED = (12, 6)  # per storm
OVERSIZE = 1_100_000  # bytes of text: past the edge's 1 MiB cap on a body
STARTER_POSTS = 100
CALLBACKS = callback_subject("creator")
CONSUMER = "creator-workflow-callbacks"
FORGERIES = ("other-secret", "body-changed", "stale", "future", "unsigned", "v0-only")


@dataclass
class Workspace:
    account: Account
    secret: str
    campaign_id: str
    late: bool
    fast: bool = False


@dataclass
class Job:
    id: str
    post_id: str
    path: str
    workspace: Workspace
    first: str  # the result it sends first: "completed" or "failed"

    @property
    def text(self) -> str:
        return f"Storm post {self.post_id[:8]}: the winter blend is here."

    def body(self, status: str) -> bytes:
        result: dict[str, Any] = {"job_id": self.id, "status": status}
        if status == "completed":
            result["content"] = {"text": self.text, "hashtags": ["coffee"]}
        else:
            result["error"] = "the model was busy"
        return json.dumps(result).encode()


def _headers(secret: str, body: bytes, at: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-BAI-Timestamp": str(at),
        "X-BAI-Signature": sign(secret, at, body),
    }


def _callback(job: Job, status: str, kind: str, *, lag: int) -> Shot:
    """A genuine callback, signed by a clock ``lag`` seconds behind ours."""
    body = job.body(status)
    at = int(time.time()) - lag
    return Shot(kind, job.path, body, _headers(job.workspace.secret, body, at), 202, job.id)


def _forged(job: Job, how: str, others: list[Workspace], rng: random.Random) -> Shot:
    body, now = job.body("completed"), int(time.time())
    secret = job.workspace.secret
    headers = _headers(secret, body, now)
    if how == "other-secret":  # another workspace's workflow, or anyone else's
        other = rng.choice([w for w in others if w is not job.workspace])
        headers = _headers(other.secret, body, now)
    elif how == "body-changed":
        headers = _headers(secret, job.body("failed"), now)
    elif how in ("stale", "future"):
        skew = 330 + rng.randint(0, 3600)
        headers = _headers(secret, body, now - skew if how == "stale" else now + skew)
    elif how == "unsigned":
        headers = {"Content-Type": "application/json"}
    else:  # v0-only
        headers["X-BAI-Signature"] = headers["X-BAI-Signature"].replace("v1=", "v0=")
    return Shot(f"forged:{how}", job.path, body, headers, 401, job.id)


def _oversized(job: Job) -> Shot:
    body = json.dumps(
        {"job_id": job.id, "status": "completed", "content": {"text": "x" * OVERSIZE}}
    ).encode()
    headers = _headers(job.workspace.secret, body, int(time.time()))
    return Shot("oversized", job.path, body, headers, 413, job.id)


def _first_storm(jobs: list[Job], workspaces: list[Workspace], rng: random.Random) -> list[Shot]:
    shots = []
    for n, job in enumerate(jobs):
        if not job.workspace.late:
            if not job.workspace.fast:  # a fast workflow's result went out at once
                shots.append(_callback(job, job.first, "result", lag=rng.randint(0, 20)))
            shots += [
                _callback(job, job.first, "retry", lag=rng.randint(0, 20))
                for _ in range(rng.randint(1, 3))
            ]
        shots.append(_forged(job, FORGERIES[n % len(FORGERIES)], workspaces, rng))
    shots += [_oversized(job) for job in rng.sample(jobs, OVERSIZED[0])]
    rng.shuffle(shots)
    return shots


def _second_storm(jobs: list[Job], workspaces: list[Workspace], rng: random.Random) -> list[Shot]:
    shots = []
    for n, job in enumerate(jobs):
        if job.workspace.late:
            shots += [
                _callback(job, job.first, "late", lag=rng.randint(0, 20))
                for _ in range(rng.randint(1, 3))
            ]
        else:
            contrary = "failed" if job.first == "completed" else "completed"
            shots += [
                _callback(job, contrary, "contrary", lag=rng.randint(0, 20))
                for _ in range(rng.randint(1, 2))
            ]
            shots.append(_callback(job, job.first, "retry-after-end", lag=rng.randint(0, 20)))
        shots.append(_forged(job, FORGERIES[(n + 3) % len(FORGERIES)], workspaces, rng))
    shots += [_oversized(job) for job in rng.sample(jobs, OVERSIZED[1])]
    rng.shuffle(shots)
    return shots


# ---- the workspaces and their jobs --------------------------------------------------------
async def _get(edge: httpx.AsyncClient, path: str, account: Account) -> Any:
    """GET as the account; its workspace's rate limit is waited out, not failed."""
    for _ in range(30):
        answer = await edge.get(path, headers=account.headers)
        if answer.status_code != 429:
            assert answer.status_code == 200, answer.text
            return answer.json()
        await asyncio.sleep(float(answer.headers.get("retry-after") or 1))
    raise AssertionError(f"{path}: still rate-limited after 30 tries")


async def _workspace(
    edge: httpx.AsyncClient, workflow: Workflow, n: int, *, late: bool, fast: bool = False
) -> Workspace:
    """A workspace whose campaign (a post a day from 1 December) is written by the n8n
    stand-in; its month is not laid out yet."""
    account = await sign_up(edge, f"Storm {n}")
    secret = f"storm-workflow-secret-{n:02d}-0123456789"
    engine: dict[str, Any] = {"type": "n8n", "webhook_url": workflow.url, "secret": secret}
    if late:
        engine["deadline_seconds"] = LATE_DEADLINE
    answer = await edge.put("/v1/creator/engine", json=engine, headers=account.headers)
    assert answer.status_code == 200, answer.text
    brand = await edge.post(
        "/v1/planner/brands",
        json={"name": f"Storm {n}", "timezone": "Europe/Madrid", "voice": {"tone": "warm"}},
        headers=account.headers,
    )
    assert brand.status_code == 201, brand.text
    days = LATE_POSTS if late else POSTS
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json={
            "brand_id": brand.json()["id"],
            "name": "Storm",
            "brief": "Launch the winter blend",
            "channels": ["x"],
            "starts_on": "2026-12-01",
            "ends_on": f"2026-12-{days:02d}",
            "cadence": {"x": {"per_day": 1}},
        },
        headers=account.headers,
    )
    assert campaign.status_code == 201, campaign.text
    return Workspace(account, secret, campaign.json()["id"], late, fast)


async def _schedule(edge: httpx.AsyncClient, workspace: Workspace) -> None:
    """Lay the month out: the posts ask creator for content, creator sends the jobs."""
    scheduled = await edge.post(
        f"/v1/planner/campaigns/{workspace.campaign_id}/schedule",
        json={"month": "2026-12"},
        headers=workspace.account.headers,
    )
    assert scheduled.status_code == 202, scheduled.text
    assert scheduled.json()["created"] == (LATE_POSTS if workspace.late else POSTS)


def _job(handed: dict[str, Any], workspace: Workspace, first: str, edge: str) -> Job:
    path = handed["callback_url"].removeprefix(edge)
    return Job(handed["job_id"], handed["post_id"], path, workspace, first)


async def _dispatched(
    client: httpx.AsyncClient,
    workflow: Workflow,
    workspaces: list[Workspace],
    rng: random.Random,
    at_once: Report,
) -> list[Job]:
    """Every job, in a fixed order, once the workflow has been handed all of them. The fast
    workflows answer "completed" the moment they get a job, as a short workflow does: before
    creator may even have recorded the dispatch."""
    edge, total = str(client.base_url).rstrip("/"), LATE_POSTS + POSTS * (len(workspaces) - 1)
    by_tenant = {w.account.tenant_id: w for w in workspaces}
    answered: set[str] = set()
    start = time.monotonic()
    async with asyncio.timeout(40):
        while True:
            seen = len(workflow.received)  # more may come while these are answered
            for handed in [d.json() for d in workflow.received[:seen]]:
                workspace = by_tenant[handed["tenant_id"]]
                if workspace.fast and handed["job_id"] not in answered:
                    answered.add(handed["job_id"])
                    job = _job(handed, workspace, "completed", edge)
                    shot = _callback(job, "completed", "at-once", lag=0)
                    at_once.hits.append(await send(client, shot, at_once))
            if len({d.json()["job_id"] for d in workflow.received[:seen]}) >= total:
                break
            await workflow.next_dispatch(after=seen)
    at_once.seconds = time.monotonic() - start
    handed_all = sorted(
        (d.json() for d in workflow.received),
        key=lambda j: (workspaces.index(by_tenant[j["tenant_id"]]), j["scheduled_at"]),
    )
    counted = Counter(j["job_id"] for j in handed_all)
    assert max(counted.values()) == 1, "a job dispatched twice"
    jobs = []
    for handed in handed_all:
        workspace = by_tenant[handed["tenant_id"]]
        failed = rng.random() < 0.2 and not workspace.fast
        jobs.append(_job(handed, workspace, "failed" if failed else "completed", edge))
    for n, job in enumerate(_all(jobs, late=True)):  # late results: both kinds, in turn
        job.first = ("completed", "failed")[n % 2]
    return jobs


async def _posts(edge: httpx.AsyncClient, workspace: Workspace) -> dict[str, dict[str, Any]]:
    url = f"/v1/planner/campaigns/{workspace.campaign_id}/posts?month=2026-12&limit=100"
    page = await _get(edge, url, workspace.account)
    return {post["id"]: post for post in page["items"]}


def _outcome(job: Job) -> str:
    """The post's state once its job's first result (in time or late) is applied."""
    return "draft_ready" if job.first == "completed" else "failed"


async def _until_posts(
    edge: httpx.AsyncClient, expected: dict[str, str], workspaces: list[Workspace], *, within: float
) -> None:
    """Until each post of ``expected`` (post id -> state) is in its state (bounded)."""
    seen: dict[str, str] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                for workspace in workspaces:
                    seen |= {i: p["state"] for i, p in (await _posts(edge, workspace)).items()}
                if all(seen.get(post) == state for post, state in expected.items()):
                    return
                await asyncio.sleep(1.0)
    except TimeoutError:
        wrong = Counter((seen.get(post), state) for post, state in expected.items())
        raise AssertionError(f"posts not settled in {within} s: (seen, expected) {wrong}") from None


async def _drained(stack: Stack, expected: set[str], *, within: float) -> list[Envelope]:
    """Once creator has recorded the ``expected`` callbacks (its outbox publishes them a
    moment after it answered) and applied every one: those recorded, from its stream."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        async with asyncio.timeout(within):
            while True:
                info = await js.consumer_info("CREATOR", CONSUMER)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    queued = await _recorded(js)
                    if expected <= {e.id for e in queued}:
                        return queued
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


async def _recorded(js: JetStreamContext) -> list[Envelope]:
    pull = await js.pull_subscribe(CALLBACKS, stream="CREATOR")
    queued: list[Envelope] = []
    try:
        while True:
            try:
                messages = await pull.fetch(200, timeout=1.0)
            except (TimeoutError, NatsTimeout):
                return queued
            queued += [Envelope.model_validate_json(m.data) for m in messages]
    finally:
        await pull.unsubscribe()


async def _ledger(edge: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    page = await _get(edge, "/v1/billing/ledger?limit=200", account)
    assert page["next_before"] is None, "more than a page: the test expects far fewer"
    entries: list[dict[str, Any]] = page["items"]
    return entries


def _expected_credits(jobs: list[Job]) -> Counter[tuple[str, str]]:
    """(job, entry) of every credit entry the jobs should leave, each once."""
    expected: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        ended = "commit" if not job.workspace.late and job.first == "completed" else "release"
        expected.update([(job.id, "reservation"), (job.id, ended)])
    return expected


async def _until_credits(
    edge: httpx.AsyncClient, jobs: list[Job], workspace: Workspace, *, within: float
) -> list[dict[str, Any]]:
    mine = [job for job in jobs if job.workspace is workspace]
    ids, expected = {job.id for job in mine}, _expected_credits(mine)
    seen: Counter[tuple[str, str]] = Counter()
    try:
        async with asyncio.timeout(within):
            while True:
                entries = await _ledger(edge, workspace.account)
                seen = Counter(
                    (e["reference"], e["entry"]) for e in entries if e["reference"] in ids
                )
                if seen == expected:
                    return entries
                await asyncio.sleep(1.0)
    except TimeoutError:
        raise AssertionError(
            f"credits of {workspace.account.tenant_id} not settled in {within} s: "
            f"missing {expected - seen}, unexpected {seen - expected}"
        ) from None


async def _storm(edge: httpx.AsyncClient, shots: list[Shot], name: str) -> Report:
    """Fire the shots at the storm's rate, print the table, check every answer."""
    report = await storm(edge, shots, name=name, rate=RATE, in_flight=IN_FLIGHT)
    print(report.table())
    _check_answers(report)
    return report


def _check_answers(report: Report) -> None:
    assert not report.unexpected(), [
        (h.shot.kind, h.status, h.json) for h in report.unexpected()[:10]
    ]
    codes = {401: "invalid_signature", 413: "payload_too_large"}
    for hit in report.hits:
        if hit.status in codes:
            assert hit.content_type == PROBLEM_JSON, (hit.shot.kind, hit.content_type)
            assert isinstance(hit.json, dict)
            assert hit.json["code"] == codes[hit.status]


def _accepted_ids(reports: list[Report]) -> dict[tuple[str, bytes], set[str]]:
    """(job, body) -> the event ids the edge answered for it."""
    ids: defaultdict[tuple[str, bytes], set[str]] = defaultdict(set)
    for hit in (h for report in reports for h in report.hits if h.status == 202):
        assert isinstance(hit.json, dict)
        ids[(hit.shot.key, hit.shot.body)].add(hit.json["event_id"])
    return ids


def _all(jobs: list[Job], *, late: bool) -> Iterator[Job]:
    return (job for job in jobs if job.workspace.late is late)


async def test_a_callback_storm_applies_each_jobs_result_once_and_refuses_forgeries(
    edge: httpx.AsyncClient, system: Stack
) -> None:
    rng = random.Random(SEED)
    async with workflow_server() as workflow:  # the late workspace first: its clock runs
        late = await _workspace(edge, workflow, 0, late=True)
        await _schedule(edge, late)
        # One at a time: a sign-up hashes a password, eight at once can outlast a timeout.
        on_time = [
            await _workspace(edge, workflow, n, late=False, fast=n <= FAST_WORKSPACES)
            for n in range(1, ON_TIME_WORKSPACES + 1)
        ]
        workspaces = [late, *on_time]
        at_once = Report("results sent at once, while jobs were being dispatched")
        dispatching = asyncio.create_task(_dispatched(edge, workflow, workspaces, rng, at_once))
        await asyncio.gather(*(_schedule(edge, workspace) for workspace in on_time))
        jobs = await dispatching
        print("\n" + at_once.table())
        _check_answers(at_once)

        first = await _storm(edge, _first_storm(jobs, workspaces, rng), "first storm")
        in_time = {job.post_id: _outcome(job) for job in _all(jobs, late=False)}
        await _until_posts(edge, in_time, on_time, within=60)
        # The silent workflow's jobs time out (30 s after their dispatch, then the sweep).
        timed_out = {job.post_id: "failed" for job in _all(jobs, late=True)}
        await _until_posts(edge, timed_out, [late], within=75)

        second = await _storm(edge, _second_storm(jobs, workspaces, rng), "second storm")
        accepted = _accepted_ids([at_once, first, second])
        expected = {i for ids in accepted.values() for i in ids}
        queued = await _drained(system, expected, within=60)
        await _until_posts(edge, {j.post_id: _outcome(j) for j in jobs}, workspaces, within=60)
        assert len({d.json()["job_id"] for d in workflow.received}) == len(workflow.received)

    # Each distinct callback has one event id, and was queued for creator once.
    assert all(len(ids) == 1 for ids in accepted.values()), "one callback, several event ids"
    ours = {job.id for job in jobs}
    queued_ids = Counter(e.id for e in queued if e.subject in ours)
    assert max(queued_ids.values()) == 1, "a callback queued twice"
    assert set(queued_ids) == expected

    for workspace in workspaces:
        mine = [job for job in jobs if job.workspace is workspace]
        posts = await _posts(edge, workspace)
        for job in mine:
            versions = await _get(
                edge, f"/v1/creator/posts/{job.post_id}/versions", workspace.account
            )
            numbers = [v["version"] for v in versions["items"]]
            post = posts[job.post_id]
            if job.first == "completed":
                assert numbers == [1], (job.id, numbers)
                assert (post["content_version"], post["text"]) == (1, job.text)
            else:
                assert numbers == [], (job.id, numbers)
        if workspace.late:
            for job in mine:
                state = (await _get(edge, f"/v1/creator/jobs/{job.id}", workspace.account))["state"]
                assert state == ("completed" if job.first == "completed" else "timed_out")
        entries = await _until_credits(edge, jobs, workspace, within=60)
        committed = sum(1 for job in mine if not workspace.late and job.first == "completed")
        balance = await _get(edge, "/v1/billing/balance", workspace.account)
        posts_ledger = sum(e["amount"] for e in entries if e["kind"] == "posts")
        assert balance["balances"]["posts"] == STARTER_POSTS - committed == posts_ledger
