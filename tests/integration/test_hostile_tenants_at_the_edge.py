"""Capacity isolation through the edge of the running system.

One workspace turns hostile: its OpenAI-compatible engine answers a regex bomb and then
drips a byte at a time, and its crawl meets a page built to make a backtracking parser
run for hours, a tarpit that never finishes answering, a link to port 99999 and a 429
with a ``Retry-After`` that is not a number. Meanwhile another workspace writes its
month of drafts, mines a website and lets a chat visitor in, all in their usual time.
The hostile jobs end ``failed`` with a reason a person can read, in bounded time, and
are charged for what was actually done. A flood of chat visitors leaves the workspace's
own people served.

The stack's deadlines for tenant-controlled calls are set small for the test session in
the root ``conftest.py``.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from bai_testing.servers import dripping_body, served
from bai_testing.sites import Site, website

from .conftest import Account, sign_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# "```" then 20,000 spaces and an "x": cubic for ^```(?:json)?\s*(.*?)\s*```$ (hours).
ENGINE_BOMB = "```" + " " * 20_000 + "x"
# Quadratic for a tag pattern that rescans from every "<" (hours on 2 MB).
PAGE_BOMB = "<html><body>" + "</p>" * 501 + "<a" + "b" * 2_000_000
ORIGIN = "https://www.victim.example"
# How long a well-behaved workspace's work may take here while the other one attacks:
# the same budget the other edge tests give the same work on a quiet stack.
USUAL = 30.0


@dataclass
class Hostile:
    """A server that a hostile tenant controls: an engine and a website in one."""

    base: str = ""
    engine_calls: int = 0
    paths: list[str] = field(default_factory=list)

    def drip(self) -> AsyncIterator[bytes]:
        """One byte a second for two minutes: every read succeeds, none ends."""
        return dripping_body(every=1.0, lasting=120)


def _completion(content: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 1796000000,
        "model": "hostile",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def _hostile_app(state: Hostile) -> Starlette:
    async def completions(request: Request) -> Response:
        await request.body()
        state.engine_calls += 1
        if state.engine_calls % 2 == 1:  # the bomb, then the drip, then the bomb...
            return JSONResponse(_completion(ENGINE_BOMB))
        return StreamingResponse(state.drip(), media_type="application/json")

    async def page(request: Request) -> Response:
        path = request.url.path
        state.paths.append(path)
        if path == "/":
            links = ["/bomb", "/tarpit", "/retry", "http://x:99999/", "/ok"]
            anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
            return HTMLResponse(f"<html><body>{anchors}</body></html>")
        if path == "/bomb":
            return HTMLResponse(PAGE_BOMB)
        if path == "/tarpit":
            return StreamingResponse(state.drip(), media_type="text/html")
        if path == "/retry":
            return PlainTextResponse("slow down", 429, headers={"Retry-After": "²"})
        if path == "/ok":
            return HTMLResponse("<html><body>write to sales@hostile.example</body></html>")
        return PlainTextResponse("", 404)

    routes = [
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/{path:path}", page),
    ]
    return Starlette(routes=routes)


@asynccontextmanager
async def hostile_server() -> AsyncIterator[Hostile]:
    state = Hostile()
    async with served(_hostile_app(state)) as base:
        state.base = base
        yield state


async def until(
    what: str, ask: Callable[[], Any], done: Callable[[Any], bool], within: float = USUAL
) -> Any:
    """Ask until the answer is done; on timeout say what the last answer was."""
    last: Any = None
    try:
        async with asyncio.timeout(within):
            while True:
                last = await ask()
                if done(last):
                    return last
                await asyncio.sleep(0.3)
    except TimeoutError:
        raise AssertionError(f"{what} not done in {within:.0f} s; last: {last}") from None


async def _get(edge: httpx.AsyncClient, url: str, account: Account) -> Any:
    response = await edge.get(url, headers=account.headers)
    assert response.status_code == 200, (url, response.status_code, response.text)
    return response.json()


async def _campaign(edge: httpx.AsyncClient, account: Account, cadence: dict[str, Any]) -> str:
    brand = await edge.post(
        "/v1/planner/brands",
        json={"name": "Brand", "timezone": "Europe/Madrid", "voice": {"tone": "warm"}},
        headers=account.headers,
    )
    assert brand.status_code == 201, brand.text
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json={
            "brand_id": brand.json()["id"],
            "name": "December",
            "brief": "Winter",
            "channels": list(cadence),
            "starts_on": "2026-12-01",
            "ends_on": "2026-12-31",
            "cadence": cadence,
        },
        headers=account.headers,
    )
    assert campaign.status_code == 201, campaign.text
    campaign_id: str = campaign.json()["id"]
    scheduled = await edge.post(
        f"/v1/planner/campaigns/{campaign_id}/schedule",
        json={"month": "2026-12"},
        headers=account.headers,
    )
    assert scheduled.status_code == 202, scheduled.text
    return campaign_id


async def _mining_job(edge: httpx.AsyncClient, account: Account, url: str, pages: int) -> str:
    created = await edge.post(
        "/v1/mining/jobs",
        json={
            "source": {"type": "website", "urls": [url]},
            "limits": {"max_pages": pages, "max_depth": 1},
        },
        headers=account.headers,
    )
    assert created.status_code == 202, created.text
    job_id: str = created.json()["id"]
    return job_id


async def _attack(edge: httpx.AsyncClient, attacker: Account, hostile: Hostile) -> tuple[str, str]:
    """The hostile workspace's engine, month and crawl, started and under way."""
    engine = await edge.put(
        "/v1/creator/engine",
        json={
            "type": "openai_compatible",
            "base_url": f"{hostile.base}/v1",
            "model": "hostile",
            "api_key": "sk-hostile-0000",
        },
        headers=attacker.headers,
    )
    assert engine.status_code == 200, engine.text
    campaign_id = await _campaign(edge, attacker, {"instagram": {"per_week": 1}})
    job_id = await _mining_job(edge, attacker, f"{hostile.base}/", pages=10)

    async def probe() -> tuple[int, list[str]]:
        return hostile.engine_calls, list(hostile.paths)

    await until(
        "the attack",
        probe,
        lambda seen: seen[0] >= 1 and bool({"/bomb", "/tarpit"} & set(seen[1])),
    )
    return campaign_id, job_id


async def _victim_month(edge: httpx.AsyncClient, victim: Account) -> list[dict[str, Any]]:
    campaign_id = await _campaign(
        edge, victim, {"instagram": {"per_week": 3}, "linkedin": {"per_week": 2}}
    )
    calendar = f"/v1/planner/campaigns/{campaign_id}/posts?month=2026-12"
    body = await until(
        "the victim's month of drafts",
        lambda: _get(edge, calendar, victim),
        lambda b: len(b["items"]) == 22 and all(p["state"] == "draft_ready" for p in b["items"]),
    )
    items: list[dict[str, Any]] = body["items"]
    return items


async def _victim_mining(edge: httpx.AsyncClient, victim: Account) -> dict[str, Any]:
    fixture = Site(pages={"/": "<html><body>Write to hello@victim.example</body></html>"})
    async with website(fixture) as site:
        job_id = await _mining_job(edge, victim, f"{site.base}/", pages=5)
        job: dict[str, Any] = await until(
            "the victim's mining job",
            lambda: _get(edge, f"/v1/mining/jobs/{job_id}", victim),
            lambda j: j["state"] not in ("queued", "running"),
        )
    return job


async def _victim_chat(edge: httpx.AsyncClient, victim: Account) -> str:
    widget = await edge.post(
        "/v1/creator/widgets",
        json={"name": "Site", "allowed_origins": [ORIGIN], "voice": {"tone": "warm"}},
        headers=victim.headers,
    )
    assert widget.status_code == 201, widget.text
    async with asyncio.timeout(USUAL):
        minted = await edge.post(
            "/v1/chat/visitor-token",
            json={"widget_key": widget.json()["public_key"]},
            headers={"Origin": ORIGIN},
        )
    assert minted.status_code == 201, minted.text
    visitor = {"Authorization": f"Bearer {minted.json()['token']}", "Origin": ORIGIN}
    started = await edge.post("/v1/creator/chat/conversations", headers=visitor)
    assert started.status_code == 201, started.text
    async with asyncio.timeout(USUAL):
        answer = await edge.post(
            f"/v1/creator/chat/{started.json()['id']}/messages",
            json={"text": "Hello?"},
            headers=visitor,
        )
    assert answer.status_code == 200, answer.text
    reply: str = answer.json()["reply"]
    return reply


async def test_a_hostile_workspace_cannot_stall_another_workspaces_drafts_mining_or_chat(
    edge: httpx.AsyncClient,
) -> None:
    attacker, victim = await sign_up(edge, "Hostile Ltd"), await sign_up(edge, "Victim Cafe")
    async with hostile_server() as hostile:
        campaign_id, attack_job = await _attack(edge, attacker, hostile)

        drafts, mined, reply = await asyncio.gather(
            _victim_month(edge, victim), _victim_mining(edge, victim), _victim_chat(edge, victim)
        )
        assert all(post["text"] for post in drafts)
        assert mined["state"] == "succeeded", mined
        assert mined["progress"]["items_found"] == 1
        assert reply

        # The hostile work ends by itself, failed with a reason, within its deadlines.
        calendar = f"/v1/planner/campaigns/{campaign_id}/posts?month=2026-12"
        posts = await until(
            "the hostile month",
            lambda: _get(edge, calendar, attacker),
            lambda b: b["items"] and all(p["state"] == "failed" for p in b["items"]),
            within=90,
        )
        hostile_job = await until(
            "the hostile crawl",
            lambda: _get(edge, f"/v1/mining/jobs/{attack_job}", attacker),
            lambda j: j["state"] not in ("queued", "running"),
            within=60,
        )
    reasons = [post["last_error"] for post in posts["items"]]
    assert all(reasons), reasons
    assert any("engine" in r for r in reasons), reasons
    assert hostile_job["state"] in ("failed", "partial"), hostile_job
    problems = " ".join(hostile_job["problems"]) + (hostile_job.get("error") or "")
    assert "malformed link" in problems, hostile_job  # port 99999: one page's problem
    assert "time limit" in problems, hostile_job

    # Nothing was charged for drafts never written; the crawl paid for what it fetched.
    fetched = hostile_job["progress"]["pages_fetched"]
    await until(
        "the hostile workspace's charges",
        lambda: _get(edge, "/v1/billing/balance", attacker),
        lambda b: (
            b["balances"] == {**b["balances"], "posts": 100, "extraction_pages": 500 - fetched}
        ),
    )
    assert fetched >= 1


async def test_a_flood_of_chat_visitors_leaves_the_workspaces_people_served(
    edge: httpx.AsyncClient, account: Account
) -> None:
    widget = await edge.post(
        "/v1/creator/widgets",
        json={"name": "Site", "allowed_origins": [ORIGIN], "voice": {"tone": "warm"}},
        headers=account.headers,
    )
    assert widget.status_code == 201, widget.text
    visitors = []
    for _ in range(3):
        minted = await edge.post(
            "/v1/chat/visitor-token",
            json={"widget_key": widget.json()["public_key"]},
            headers={"Origin": ORIGIN},
        )
        assert minted.status_code == 201, minted.text
        visitors.append({"Authorization": f"Bearer {minted.json()['token']}", "Origin": ORIGIN})
    started = await edge.post("/v1/creator/chat/conversations", headers=visitors[0])
    assert started.status_code == 201, started.text
    messages = f"/v1/creator/chat/{started.json()['id']}/messages"

    async def flood(visitor: dict[str, str]) -> int:
        """Read until the edge says 429; the count of answers before it."""
        for count in range(1, 400):
            answer = await edge.get(messages, headers=visitor)
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1
                return count
            assert answer.status_code in (200, 404), answer.text
        raise AssertionError("a visitor was never limited")

    await asyncio.gather(*(flood(visitor) for visitor in visitors))
    owner = await edge.get("/v1/planner/campaigns", headers=account.headers)
    assert owner.status_code == 200, owner.text
    policy = owner.headers["RateLimit-Policy"]
    assert "visitor" not in policy, policy
    assert "widget" not in policy, policy
    assert owner.json()["items"] == []
