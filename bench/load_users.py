"""Concurrent users through the edge: headless locust at 10, 100 and 1,000 users.

The script starts a stack (PostgreSQL, NATS, every service and Traefik) in a temporary
folder on free ports, serves a small website on 127.0.0.1 for the mining jobs, and seeds
``--workspaces`` workspaces through the edge: a brand, two campaigns with a month of posts
whose drafts the creator has written, and a chat widget. Then, for each level of
``--users``, it mints one access token per user (refresh rotations, so the ForwardAuth cache
sees as many credentials as there are people) and runs ``locust --headless`` with
``bench/_users.py`` (who does what is described there): all users spawned at
``--spawn-rate``, a warm-up, then ``--seconds`` measured.

It prints, per level, each endpoint's answers, throughput and p50/p95/p99 of the expected
answers, the 429s (deliberate refusals, counted apart) and the errors; then one line per
level, with the CPU each part of the stack used and what other processes on the machine
used in the same window.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
from rich.table import Table

from bai_platform.devstack import Stack
from bai_testing.sites import Site, website
from bench._load import (
    BenchError,
    bearer,
    client,
    console,
    expect,
    machine_rows,
    own_stack,
    process_cpu_seconds,
    raise_interrupt,
)

LOCUSTFILE = Path(__file__).with_name("_users.py")
ORIGIN = "https://www.bench-coffee.example"
LIFTED = {"limit": 100_000_000}
ENV = {
    # Every quota far above what the run can reach: the limiter still counts every request.
    "BAI_RATE_LIMITS": json.dumps(
        {
            "ip_auth": LIFTED,
            "ip_public": LIFTED,
            "credential": LIFTED,
            "visitor": LIFTED,
            "widget": LIFTED,
            "visitor_token_ip": {**LIFTED, "window_seconds": 3600},
            "visitor_token_widget": {**LIFTED, "window_seconds": 3600},
            "tenant_plans": {"starter": LIFTED},
        }
    ),
    "BAI_STARTER_GRANT": json.dumps(
        {"posts": 1_000_000, "extraction_pages": 1_000_000, "chat_messages": 1_000_000}
    ),
    # The mining jobs crawl the bench's own site on 127.0.0.1, and need not be polite to it.
    "BAI_CRAWL_ALLOWED_HOSTS": '["127.0.0.1"]',
    "BAI_CRAWL_DELAY_SECONDS": "0",
}
CAMPAIGNS = (
    {
        "channels": ["instagram", "linkedin"],
        "cadence": {"instagram": {"per_day": 1}, "linkedin": {"per_day": 1}},
    },
    {"channels": ["facebook"], "cadence": {"facebook": {"per_week": 3}}},
)
HOME = """<html><head><title>Bench Coffee</title>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "CafeOrCoffeeShop",
 "name": "Bench Coffee", "telephone": "+34 912 345 678"}</script></head>
<body><a href="/about">About</a></body></html>"""
ABOUT = "<html><body><p>Write to hello@bench-coffee.example</p></body></html>"
STACK_PARTS = (
    "traefik",
    "gateway-api",
    "planner-api",
    "creator-api",
    "mining-api",
    "billing-api",
    "postgres",
    "nats",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,100,1000", help="levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured, per level")
    parser.add_argument("--warmup", type=float, default=10.0, help="after the last spawn")
    parser.add_argument("--spawn-rate", type=float, default=50.0, help="users started per s")
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--month", default=next_month())
    parser.add_argument("--keep", action="store_true", help="print locust's own output")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record the gateway and planner apis in each measured window (raw stacks)",
    )
    parser.add_argument("--logs", metavar="DIR", help="copy the stack's logs here before it stops")
    return parser.parse_args(argv)


def next_month() -> str:
    today = date.today()
    return f"{today.year + today.month // 12}-{today.month % 12 + 1:02d}"


# ---- seeding ---------------------------------------------------------------------------
@dataclass
class Workspace:
    headers: dict[str, str]
    refresh_token: str
    campaigns: list[str] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)
    widget_key: str = ""
    tokens: list[str] = field(default_factory=list)


async def sign_up(edge: httpx.AsyncClient, number: int) -> Workspace:
    body = {
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
        "password": "bench-password-" + uuid.uuid4().hex[:8],
        "workspace": f"Bench Coffee {number}",
    }
    response = await edge.post("/v1/auth/signup", json=body)
    expect(response, 201, "sign up")
    answer = response.json()
    return Workspace(bearer(answer["access_token"]), answer["refresh_token"])


async def furnish(edge: httpx.AsyncClient, ws: Workspace, month: str) -> None:
    """A brand, the campaigns with their month scheduled, and a chat widget."""
    brand = await edge.post(
        "/v1/planner/brands",
        json={"name": "Bench Coffee", "timezone": "Europe/Madrid", "voice": {"tone": "warm"}},
        headers=ws.headers,
    )
    expect(brand, 201, "create a brand")
    for number, plan in enumerate(CAMPAIGNS):
        body = {"brand_id": brand.json()["id"], "name": f"Bench campaign {number}", **plan}
        campaign = await edge.post("/v1/planner/campaigns", json=body, headers=ws.headers)
        expect(campaign, 201, "create a campaign")
        ws.campaigns.append(str(campaign.json()["id"]))
        url = f"/v1/planner/campaigns/{ws.campaigns[-1]}/schedule"
        expect(await edge.post(url, json={"month": month}, headers=ws.headers), 202, "schedule")
    widget = await edge.post(
        "/v1/creator/widgets",
        json={
            "name": "Bench site",
            "allowed_origins": [ORIGIN],
            "knowledge": [{"title": "Hours", "text": "We open every day from 8:00 to 20:00."}],
            "engine": "builtin",
            "visitor_hourly_limit": 10_000,
            "widget_daily_limit": 1_000_000,
        },
        headers=ws.headers,
    )
    expect(widget, 201, "create a widget")
    ws.widget_key = str(widget.json()["public_key"])


async def drafted(edge: httpx.AsyncClient, ws: Workspace) -> None:
    """Wait until every post is draft_ready, then note the posts' ids."""
    async with asyncio.timeout(300):
        for campaign in ws.campaigns:
            url = f"/v1/planner/campaigns/{campaign}"
            while True:
                progress = (await edge.get(url, headers=ws.headers)).json()["progress"]
                if progress["by_state"].get("draft_ready", 0) == progress["total"]:
                    break
                await asyncio.sleep(0.5)
            page = await edge.get(f"{url}/posts?limit=100", headers=ws.headers)
            expect(page, 200, "list the posts")
            ws.posts += [str(post["id"]) for post in page.json()["items"]]


async def seed(edge: httpx.AsyncClient, count: int, month: str) -> list[Workspace]:
    workspaces = [await sign_up(edge, number) for number in range(count)]
    await asyncio.gather(*(furnish(edge, ws, month) for ws in workspaces))
    await asyncio.gather(*(drafted(edge, ws) for ws in workspaces))
    return workspaces


async def mint_tokens(edge: httpx.AsyncClient, ws: Workspace, count: int) -> None:
    """``count`` access tokens of the workspace's user, by rotating its refresh token."""
    ws.tokens = []
    while len(ws.tokens) < count:
        response = await edge.post("/v1/auth/refresh", json={"refresh_token": ws.refresh_token})
        expect(response, 200, "refresh")
        ws.tokens.append(response.json()["access_token"])
        ws.refresh_token = response.json()["refresh_token"]


def seed_file(workspaces: list[Workspace], month: str, site: str, path: Path) -> None:
    first = date.fromisoformat(f"{month}-01")
    following = date.fromisoformat(f"{next_month_of(month)}-01")
    span = [f"{first.isoformat()}T00:00:00Z", f"{following.isoformat()}T00:00:00Z"]
    rows = [
        {
            "campaigns": ws.campaigns,
            "posts": ws.posts,
            "widget_key": ws.widget_key,
            "tokens": ws.tokens,
            "range": span,
        }
        for ws in workspaces
    ]
    body = {"month": month, "origin": ORIGIN, "site_url": f"{site}/", "workspaces": rows}
    path.write_text(json.dumps(body))


def next_month_of(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year + number // 12}-{number % 12 + 1:02d}"


# ---- CPU -------------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """``pid`` and every descendant (PostgreSQL's backends, uvicorn's children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (every core), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def snapshot(pids: Mapping[str, int]) -> dict[str, dict[int, float]]:
    return {
        name: {p: cpu for p in tree(pid) if (cpu := process_cpu_seconds(p)) is not None}
        for name, pid in pids.items()
    }


def used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


@dataclass
class CpuWindow:
    """CPU per part of the stack and of the whole machine between two snapshots."""

    pids: dict[str, int]
    started: float = 0.0
    busy: float = 0.0
    parts: dict[str, dict[int, float]] = field(default_factory=dict)

    def open(self) -> None:
        self.started, self.busy = time.monotonic(), machine_busy_seconds()
        self.parts = snapshot(self.pids)

    def close(self) -> dict[str, float]:
        """Percent of one core per part, ``stack + locust`` and ``other processes``."""
        seconds = time.monotonic() - self.started
        after = snapshot(self.pids)
        shares = {n: 100 * used(self.parts.get(n, {}), a) / seconds for n, a in after.items()}
        whole = 100 * (machine_busy_seconds() - self.busy) / seconds
        ours = sum(shares.values())
        return {**shares, "ours": ours, "other processes": max(0.0, whole - ours)}


def stack_pids(stack: Stack) -> dict[str, int]:
    pids = {}
    for name, process in stack.processes.items():
        if process.pid is not None:
            pids[name] = process.pid
    return pids


# ---- one level -------------------------------------------------------------------------
@dataclass
class Level:
    users: int
    seconds: float
    latencies: dict[str, list[float]]
    limited: Counter[str]
    errors: Counter[str]
    cpu: dict[str, float]
    load: tuple[float, ...]


async def run_level(
    edge_url: str, users: int, args: argparse.Namespace, seed_path: Path, pids: dict[str, int]
) -> Level:
    spawn = math.ceil(users / args.spawn_rate)
    run_time = math.ceil(spawn + args.warmup + args.seconds)
    out = seed_path.with_name(f"level-{users}.json")
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(args.spawn_rate), "-t", f"{run_time}s",
        "--host", edge_url, "--only-summary", "--exit-code-on-error", "0",
        "--stop-timeout", "5", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {
        **os.environ,
        "BAI_BENCH_SEED": str(seed_path),
        "BAI_BENCH_OUT": str(out),
        "BAI_BENCH_WARMUP": str(args.warmup),
    }
    log = seed_path.with_name(f"locust-{users}.log")
    console.print(f"[bold]{users} users[/]: spawning for ~{spawn} s, then {args.warmup:.0f} s "
                  f"warm-up and {args.seconds:.0f} s measured …")  # fmt: skip
    with log.open("wb") as sink:
        locust = await asyncio.create_subprocess_exec(*argv, env=env, stdout=sink, stderr=sink)
        cpu = CpuWindow({**pids, "locust": locust.pid})
        await asyncio.sleep(spawn + args.warmup)
        cpu.open()
        spies = await profile(args.profile, pids, users, args.seconds)
        await asyncio.sleep(args.seconds)
        shares = cpu.close()
        for spy in spies:
            await spy.wait()
        async with asyncio.timeout(run_time + 60):
            await locust.wait()
    if args.keep:
        console.print(log.read_text()[-4000:])
    if not out.exists():
        raise BenchError(f"locust wrote no results; its log:\n{log.read_text()[-3000:]}")
    raw = json.loads(out.read_text())
    return Level(
        users=users,
        seconds=float(raw["seconds"]),
        latencies=raw["latencies"],
        limited=Counter(raw["limited"]),
        errors=Counter(raw["errors"]),
        cpu=shares,
        load=os.getloadavg(),
    )


PROFILED = ("gateway-api", "planner-api")


async def profile(
    folder: str | None, pids: dict[str, int], users: int, seconds: float
) -> list[asyncio.subprocess.Process]:
    """py-spy on the profiled apis for the window: ``DIR/<part>-<users>.txt``, one line per
    stack and its sample count (``sort -k2 -n`` or flamegraph.pl read it)."""
    if folder is None:
        return []
    spies = []
    for part in PROFILED:
        out = Path(folder) / f"{part}-{users}.txt"
        argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                str(pids[part]), "--duration", f"{int(seconds)}", "--format", "raw",
                "--nonblocking", "--rate", "50", "--output", str(out)]  # fmt: skip
        spies.append(
            await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        )
    return spies


# ---- results ---------------------------------------------------------------------------
def cuts(values: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 in ms (NaN with fewer than two values)."""
    if len(values) < 2:
        return (float("nan"),) * 3
    points = statistics.quantiles(values, n=100, method="inclusive")
    return points[49], points[94], points[98]


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def endpoint_table(level: Level) -> Table:
    table = Table(title=f"{level.users} users: {level.seconds:.0f} s measured")
    table.add_column("endpoint")
    for column in ("ok", "req/s", "p50 ms", "p95 ms", "p99 ms", "429", "errors"):
        table.add_column(column, justify="right")
    names = sorted({*level.latencies, *level.limited, *(e.split(" -> ")[0] for e in level.errors)})
    for name in names:
        values = level.latencies.get(name, [])
        errors = sum(n for e, n in level.errors.items() if e.split(" -> ")[0] == name)
        table.add_row(
            name,
            f"{len(values)}",
            f"{len(values) / level.seconds:.1f}",
            *(ms(v) for v in cuts(values)),
            f"{level.limited.get(name, 0)}",
            f"{errors}",
        )
    return table


def everything(level: Level) -> list[float]:
    return [v for values in level.latencies.values() for v in values]


def summary_table(levels: list[Level]) -> Table:
    table = Table(title="every endpoint together")
    table.add_column("users", justify="right")
    for column in ("req/s", "p50 ms", "p95 ms", "p99 ms", "429", "errors", "load avg (1m)"):
        table.add_column(column, justify="right")
    for level in levels:
        values = everything(level)
        table.add_row(
            f"{level.users:,}",
            f"{len(values) / level.seconds:.1f}",
            *(ms(v) for v in cuts(values)),
            f"{sum(level.limited.values())}",
            f"{sum(level.errors.values())}",
            f"{level.load[0]:.2f}",
        )
    return table


def cpu_table(levels: list[Level]) -> Table:
    table = Table(title="CPU in the measured window (percent of one core; 2 cores = 200)")
    table.add_column("part")
    for level in levels:
        table.add_column(f"{level.users:,} users", justify="right")
    names = [n for n in (*STACK_PARTS, "locust") if any(n in lv.cpu for lv in levels)]
    others = sorted({n for lv in levels for n in lv.cpu} - {*names, "ours", "other processes"})
    for name in (*names, *others, "ours", "other processes"):
        table.add_row(name, *(f"{lv.cpu.get(name, float('nan')):.0f}" for lv in levels))
    return table


def verdict(levels: list[Level]) -> str:
    if len(levels) < 2:
        return ""
    base, top = cuts(everything(levels[0]))[0], cuts(everything(levels[-1]))[2]
    errors = sum(levels[-1].errors.values())
    ratio = top / base if base else float("nan")
    return (
        f"at {levels[-1].users:,} users: {errors} errors; p99 {ms(top)} ms = {ratio:.1f} x "
        f"the {levels[0].users:,}-user p50 ({ms(base)} ms); goal: 0 errors and at most 10 x"
    )


def error_lines(levels: Iterable[Level]) -> list[str]:
    lines = []
    for level in levels:
        for what, count in level.errors.most_common(12):
            lines.append(f"  {level.users} users: {what} x{count}")
    return lines


# ---- entry -----------------------------------------------------------------------------
async def measure(stack: Stack, args: argparse.Namespace, levels: list[int]) -> list[Level]:
    fixture = Site(pages={"/": HOME, "/about": ABOUT})
    async with website(fixture) as site, client(stack.edge_url) as edge:
        edge.timeout = httpx.Timeout(120.0)
        started = time.perf_counter()
        workspaces = await seed(edge, args.workspaces, args.month)
        posts = sum(len(ws.posts) for ws in workspaces)
        console.print(f"Seeded {len(workspaces)} workspaces, {posts} drafts, in "
                      f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        results = []
        with tempfile.TemporaryDirectory(prefix="bai-load-") as folder:
            seed_path = Path(folder) / "seed.json"
            for users in levels:
                per_workspace = math.ceil(users / len(workspaces))
                await asyncio.gather(*(mint_tokens(edge, ws, per_workspace) for ws in workspaces))
                seed_file(workspaces, args.month, site.base, seed_path)
                level = await run_level(stack.edge_url, users, args, seed_path, stack_pids(stack))
                console.print(endpoint_table(level))
                results.append(level)
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(part) for part in args.users.split(",") if part.strip()]
    signal.signal(signal.SIGTERM, raise_interrupt)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with own_stack(ENV, edge_trusted_ips=["127.0.0.1"]) as stack:
        try:
            results = asyncio.run(measure(stack, args, levels))
        finally:
            if args.logs:
                shutil.copytree(stack.logs, args.logs, dirs_exist_ok=True)
    context = machine_rows(load_before) | {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "levels": args.users,
        "per level": f"spawn at {args.spawn_rate:g}/s, {args.warmup:g} s warm-up, "
        f"{args.seconds:g} s measured",
        "workspaces": f"{args.workspaces}, month {args.month}",
    }
    about = Table(title="context", show_header=False)
    for name, value in context.items():
        about.add_row(name, value)
    console.print(about, summary_table(results), cpu_table(results))
    if lines := error_lines(results):
        console.print("errors:", *lines, sep="\n")
    console.print(verdict(results))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
