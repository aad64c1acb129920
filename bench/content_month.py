"""A month of content through the edge: how long laying it out takes, and how fast the
built-in engine's drafts come back.

For each size, in a fresh campaign of one workspace:

- ``schedule``: the one ``POST /v1/planner/campaigns/{id}/schedule`` request that lays
  the month out (posts, history rows and one generation request per post, in one
  transaction);
- ``all drafts``: from that answer until every post is ``draft_ready``, polling the
  campaign's progress every 100 ms. That is the whole loop: planner outbox → JetStream →
  creator (a job, the built-in engine, a content version, an outbox event) → JetStream →
  planner (the post moves, its history and a live event);
- ``drafts/s``: posts divided by that time.

Sizes: a typical month (instagram 3 a week and linkedin 2 a week, 22 posts in December
2026) and the largest month a campaign allows (8 channels, 7 posts a day, 1,736 posts).
A stack (PostgreSQL, NATS, the services, Traefik) runs in a temporary folder on free
ports and is stopped at the end. ``--edge-url`` uses a running ``make run`` instead.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from typing import Any

import httpx
from rich.table import Table

from bench._load import bearer, client, console, expect, machine_rows, own_stack, raise_interrupt

CHANNELS = ["instagram", "facebook", "linkedin", "x", "tiktok", "blog", "email", "google_business"]
SIZES: dict[str, dict[str, Any]] = {
    "typical (2 channels)": {
        "channels": ["instagram", "linkedin"],
        "cadence": {"instagram": {"per_week": 3}, "linkedin": {"per_week": 2}},
    },
    "largest (8 channels x 7/day)": {
        "channels": CHANNELS,
        "cadence": {c: {"per_day": 7} for c in CHANNELS},
    },
}
ENV = {
    "BAI_RATE_LIMITS": '{"tenant_plans": {"starter": {"limit": 1000000}}}',
    # Enough starter credits for the largest month (each post holds one while it is written).
    "BAI_STARTER_GRANT": '{"posts": 100000, "extraction_pages": 0, "chat_messages": 0}',
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge-url", help="use a running stack's edge instead of starting one")
    parser.add_argument("--month", default="2026-12")
    return parser.parse_args(argv)


async def workspace(edge: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    signup = {
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
        "password": "bench-password-" + uuid.uuid4().hex[:8],
        "workspace": "Bench Coffee",
    }
    response = await edge.post("/v1/auth/signup", json=signup)
    expect(response, 201, "sign up")
    headers = bearer(str(response.json()["access_token"]))
    brand = await edge.post(
        "/v1/planner/brands",
        json={"name": "Bench Coffee", "timezone": "Europe/Madrid", "voice": {"tone": "warm"}},
        headers=headers,
    )
    expect(brand, 201, "create a brand")
    return headers, str(brand.json()["id"])


async def one_month(
    edge: httpx.AsyncClient, headers: dict[str, str], brand: str, size: dict[str, Any], month: str
) -> dict[str, str]:
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json={"brand_id": brand, "name": f"Bench {uuid.uuid4().hex[:6]}", **size},
        headers=headers,
    )
    expect(campaign, 201, "create a campaign")
    url = f"/v1/planner/campaigns/{campaign.json()['id']}"
    started = time.perf_counter()
    scheduled = await edge.post(f"{url}/schedule", json={"month": month}, headers=headers)
    laid_out = time.perf_counter()
    expect(scheduled, 202, "schedule the month")
    posts = int(scheduled.json()["created"])
    while True:
        progress = (await edge.get(url, headers=headers)).json()["progress"]
        if progress["by_state"].get("draft_ready", 0) == posts:
            break
        await asyncio.sleep(0.1)
    drafted = time.perf_counter() - laid_out
    return {
        "posts": f"{posts}",
        "schedule": f"{(laid_out - started) * 1000:.0f} ms",
        "all drafts": f"{drafted:.2f} s",
        "drafts/s": f"{posts / drafted:.0f}",
    }


async def measure(edge_url: str, month: str) -> dict[str, dict[str, str]]:
    async with client(edge_url) as edge:
        edge.timeout = httpx.Timeout(120.0)  # the largest month is one long transaction
        headers, brand = await workspace(edge)
        return {name: await one_month(edge, headers, brand, s, month) for name, s in SIZES.items()}


def render(results: dict[str, dict[str, str]], context: dict[str, str]) -> tuple[Table, Table]:
    about = Table(title="context", show_header=False)
    for name, value in context.items():
        about.add_row(name, value)
    table = Table(title="a month of content through the edge")
    table.add_column("month")
    for column in ("posts", "schedule", "all drafts", "drafts/s"):
        table.add_column(column, justify="right")
    for name, row in results.items():
        table.add_row(name, *row.values())
    return about, table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    load_before = os.getloadavg()
    if args.edge_url:
        results = asyncio.run(measure(args.edge_url, args.month))
    else:
        with own_stack(ENV) as stack:
            results = asyncio.run(measure(stack.edge_url, args.month))
    console.print(*render(results, machine_rows(load_before)))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
