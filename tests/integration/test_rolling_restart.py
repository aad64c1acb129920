"""A rolling restart under load: every service's replicas are replaced one at a time while
mixed traffic runs through the edge and months are being written. Expected: no request
fails and no message is lost (every post of every month ends ``draft_ready``).

A replica being replaced first answers /readyz 503 while it goes on serving (Traefik
takes it out of rotation), then stops listening and finishes what it has; a request whose
connection fails meanwhile is sent to the other replica; workers drain their consumers and
their request/reply endpoints, and questions asked meanwhile wait for the other replica.
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import uuid4

import httpx
import pytest

from bai_platform.devstack import SERVICES, Stack

from .conftest import (
    DECEMBER_POSTS,
    new_brand,
    new_december_campaign,
    replicated_stack,
    sign_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TARGET_RATE = 200  # requests a second, the "about 200"
WORKSPACES = 4

LIMITS = {
    "ip_auth": {"limit": 1_000_000},
    "credential": {"limit": 1_000_000},
    "tenant_plans": {"starter": {"limit": 1_000_000}},
}


@pytest.fixture(scope="module")
def replicated() -> Iterator[Stack]:
    with replicated_stack(LIMITS) as stack:
        yield stack


@dataclass
class Workspace:
    headers: dict[str, str]
    campaign_id: str = ""


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    sent: int = 0

    def note(self, what: str, response: httpx.Response | Exception, expected: int) -> None:
        self.sent += 1
        status = response.status_code if isinstance(response, httpx.Response) else None
        self.answers[f"{what} {status or type(response).__name__}"] += 1
        if status != expected and len(self.failures) < 20:
            detail = response.text[:200] if isinstance(response, httpx.Response) else response
            self.failures.append(f"{what}: {status} {detail}")


async def _workspace(edge: httpx.AsyncClient, n: int) -> Workspace:
    account = await sign_up(edge, f"Rolling {n}")
    workspace = Workspace(account.headers)
    brand_id = await new_brand(edge, account)
    workspace.campaign_id = await new_december_campaign(edge, account, brand_id)
    return workspace


def _requests(workspace: Workspace) -> list[tuple[str, str, str, int]]:
    """The mix: (name, method, path, expected status)."""
    campaign = workspace.campaign_id
    return [
        ("me", "GET", "/v1/auth/me", 200),
        ("brands", "GET", "/v1/planner/brands", 200),
        ("posts", "GET", f"/v1/planner/campaigns/{campaign}/posts?month=2026-12", 200),
        ("brief", "GET", f"/v1/creator/campaigns/{campaign}/brief", 200),
        ("balance", "GET", "/v1/billing/balance", 200),
        ("schedules", "GET", "/v1/mining/schedules", 200),
        ("new brand", "POST", "/v1/planner/brands", 201),
    ]


async def _traffic(
    edge: httpx.AsyncClient, workspaces: list[Workspace], tally: Tally, stop: asyncio.Event
) -> None:
    """One client among many: a request every ``concurrency / TARGET_RATE`` seconds."""
    rng = random.Random()
    while not stop.is_set():
        started = time.monotonic()
        workspace = rng.choice(workspaces)
        name, method, path, expected = rng.choice(_requests(workspace))
        body = None
        if method == "POST":
            body = {"name": f"Pop-up {uuid4().hex[:12]}", "timezone": "Europe/Madrid"}
        try:
            response: httpx.Response | Exception = await edge.request(
                method, path, json=body, headers=workspace.headers
            )
        except httpx.HTTPError as exc:
            response = exc
        tally.note(name, response, expected)
        await asyncio.sleep(max(0.0, CLIENTS / TARGET_RATE - (time.monotonic() - started)))


CLIENTS = 24


async def _all_drafts_ready(edge: httpx.AsyncClient, workspace: Workspace) -> Counter[str]:
    page = await edge.get(
        f"/v1/planner/campaigns/{workspace.campaign_id}/posts?month=2026-12",
        headers=workspace.headers,
    )
    assert page.status_code == 200, page.text
    return Counter(post["state"] for post in page.json()["items"])


async def test_replacing_every_replica_under_load_fails_no_request_and_loses_no_post(
    replicated: Stack,
) -> None:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=replicated.edge_url, timeout=30, limits=limits) as edge:
        workspaces = [await _workspace(edge, n) for n in range(WORKSPACES)]
        tally, stop = Tally(), asyncio.Event()
        clients = [
            asyncio.create_task(_traffic(edge, workspaces, tally, stop)) for _ in range(CLIENTS)
        ]
        started = time.monotonic()
        for workspace in workspaces:  # written while the replicas are being replaced
            scheduled = await edge.post(
                f"/v1/planner/campaigns/{workspace.campaign_id}/schedule",
                json={"month": "2026-12"},
                headers=workspace.headers,
            )
            assert scheduled.status_code == 202, scheduled.text
        restarts = []
        for service in SERVICES:
            for suffix in ("", "-2"):
                names = [f"{service}-api{suffix}", f"{service}-worker{suffix}"]
                await asyncio.gather(
                    *(asyncio.to_thread(replicated.restart_component, n) for n in names)
                )
                restarts += names
        stop.set()
        await asyncio.gather(*clients)
        elapsed = time.monotonic() - started

        states: list[Counter[str]] = []
        async with asyncio.timeout(60):
            while True:
                states = [await _all_drafts_ready(edge, w) for w in workspaces]
                if all(s == Counter({"draft_ready": DECEMBER_POSTS}) for s in states):
                    break
                await asyncio.sleep(0.5)

    report = [f"\nrolling restart: {len(restarts)} processes replaced in {elapsed:.1f} s"]
    report.append(f"{tally.sent} requests, {tally.sent / elapsed:.0f}/s through the edge")
    report += [f"  {answer:<22} {count:>6}" for answer, count in sorted(tally.answers.items())]
    report.append(f"posts: {[dict(s) for s in states]}")
    print("\n".join(report))  # noqa: T201 (the run's figures, shown with -s)
    assert tally.failures == [], "\n".join(tally.failures)
    assert len(restarts) == 2 * 2 * len(SERVICES)
