"""Requests/s and p50/p90/p99 of the authenticated campaign list, through the edge and direct.

Edge:   client -> Traefik (strip-identity, flood-shield, ForwardAuth -> gateway) -> planner.
Direct: client -> planner, with an ``X-BAI-Identity`` fetched from the gateway's
        ForwardAuth endpoint (re-fetched before it expires).

Both targets are measured in the same run, alternately (direct, edge, direct, edge, ...),
by one asyncio load generator (httpx, HTTP/1.1 keep-alive) on the same machine as the
servers. By default a whole stack is started in a temporary folder on free ports and
stopped at the end; ``--edge-url``/``--planner-url`` use a stack that is already running.
See bench/README.md for how to read the ratio.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from rich.console import Console
from rich.table import Table

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.config import reachable_state_dir
from bai_platform.devstack.stack import ComponentFailed, StackError
from bai_platform.identity import IDENTITY_HEADER

# Throughput, not quotas, is measured: the limiter still counts every request (its cost is
# in the figures) but the quotas sit far above what one machine can send.
BENCH_ENV = {
    "BAI_RATE_LIMITS": json.dumps(
        {
            "credential": {"limit": 10_000_000},
            "tenant_plans": {"starter": {"limit": 10_000_000}},
        }
    )
}

LIST_PATH = "/v1/planner/campaigns"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8101"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
REQUEST_TIMEOUT = 10.0
# Fetch a new identity when the current one has less than this to live (the gateway
# hands out a cached one with at least 15 s left; the planner allows 5 s of leeway).
IDENTITY_MARGIN = 10.0
TARGETS = ("direct", "edge")

# Wide enough for the results table when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 100)


class BenchError(RuntimeError):
    """The benchmark could not set up or run."""


@dataclass(frozen=True)
class Params:
    concurrency: int
    warmup: float
    duration: float
    rounds: int
    campaigns: int
    edge_url: str | None
    planner_url: str | None
    gateway_url: str | None


@dataclass(frozen=True)
class Targets:
    mode: str
    edge: str
    planner: str
    gateway: str


@dataclass
class Sample:
    """The measured window of one run against one target."""

    target: str
    seconds: float
    cpu_seconds: float = 0.0  # this process (the load generator) in the window
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: str, seconds: float) -> None:
        if outcome == "200":
            self.latencies.append(seconds)
        else:
            self.errors[outcome] += 1


@dataclass(frozen=True)
class Summary:
    target: str
    requests: int
    errors: int
    rps: float
    p50: float
    p90: float
    p99: float
    generator_cpu: float  # percent of one core


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @classmethod
    def after(cls, warmup: float, duration: float) -> "Window":
        start = time.perf_counter() + warmup
        return cls(start=start, end=start + duration)


# ---- arguments -----------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="direct+edge pairs to run")
    parser.add_argument("--campaigns", type=int, default=20, help="campaigns in the list")
    parser.add_argument("--edge-url", help="edge of a running stack (e.g. http://127.0.0.1:8080)")
    parser.add_argument("--planner-url", help="planner of a running stack (http://127.0.0.1:8102)")
    parser.add_argument("--gateway-url", help=f"gateway of a running stack ({DEFAULT_GATEWAY_URL})")
    ns = parser.parse_args(argv)
    params = Params(**vars(ns))
    _validate(parser, params)
    return params


def _validate(parser: argparse.ArgumentParser, p: Params) -> None:
    if (p.edge_url is None) != (p.planner_url is None):
        parser.error("--edge-url and --planner-url go together")
    if p.gateway_url is not None and p.edge_url is None:
        parser.error("--gateway-url needs --edge-url and --planner-url")
    if min(p.concurrency, p.rounds, p.campaigns) < 1 or p.duration <= 0 or p.warmup < 0:
        parser.error("concurrency, rounds, campaigns and duration must be positive")


def _loopback_only(targets: Targets) -> None:
    for url in (targets.edge, targets.planner, targets.gateway):
        if urlsplit(url).hostname not in LOOPBACK_HOSTS:
            raise BenchError(f"{url}: this benchmark only sends traffic to 127.0.0.1")


# ---- the stack -----------------------------------------------------------------------
def _report(component: str, status: str, detail: str) -> None:
    console.print(f"  [dim]{status:>9}  {component}[/]")


@contextlib.contextmanager
def own_stack() -> Iterator[Targets]:
    """A whole stack in a temporary folder on free ports, stopped on the way out."""
    with reachable_state_dir() as state:
        settings = StackSettings(state_dir=state, free_ports=True, service_env=BENCH_ENV)
        stack = Stack(settings, reporter=_report)
        try:
            console.print(f"Starting a stack in {state} …")
            _start(stack)
            yield Targets(
                mode="own stack (temporary, free ports)",
                edge=stack.edge_url,
                planner=stack.service_url("planner"),
                gateway=stack.service_url("gateway"),
            )
        finally:
            console.print("Stopping the stack …")
            stack.stop()


def _start(stack: Stack) -> None:
    """Start the stack; a failure carries its log tail (the folder goes away with it)."""
    try:
        stack.start()
    except ComponentFailed as exc:
        raise BenchError(f"{exc}; log {exc.log_path}:\n{exc.log_tail()}") from exc


def targets_of(params: Params) -> contextlib.AbstractContextManager[Targets]:
    if params.edge_url is None or params.planner_url is None:
        return own_stack()
    return contextlib.nullcontext(
        Targets(
            mode="running stack",
            edge=params.edge_url.rstrip("/"),
            planner=params.planner_url.rstrip("/"),
            gateway=(params.gateway_url or DEFAULT_GATEWAY_URL).rstrip("/"),
        )
    )


# ---- set-up: an account, campaigns, an identity ----------------------------------------
def _client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT, trust_env=False, **kwargs)


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def prepare_account(edge_url: str, campaigns: int) -> str:
    """Sign up a fresh workspace through the edge, fill it; returns the access token."""
    async with _client(edge_url) as edge:
        signup = {
            "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
            "password": "bench-password-" + uuid.uuid4().hex[:8],
            "workspace": "Bench Coffee",
        }
        response = await edge.post("/v1/auth/signup", json=signup)
        _expect(response, 201, "sign up")
        token = str(response.json()["access_token"])
        for number in range(1, campaigns + 1):
            created = await edge.post(
                LIST_PATH, json={"name": f"Bench campaign {number}"}, headers=_bearer(token)
            )
            _expect(created, 201, "create a campaign")
    return token


@dataclass(frozen=True)
class IdentitySource:
    """``X-BAI-Identity`` for direct calls, from the gateway's ForwardAuth endpoint."""

    gateway_url: str
    token: str

    async def fetch(self) -> tuple[str, float]:
        """The identity and when it expires (epoch seconds)."""
        async with _client(self.gateway_url) as gateway:
            response = await gateway.get("/auth/verify", headers=_bearer(self.token))
        _expect(response, 200, "ForwardAuth /auth/verify")
        identity = response.headers.get(IDENTITY_HEADER)
        if not identity:
            raise BenchError(f"/auth/verify answered without {IDENTITY_HEADER}")
        claims = jwt.decode(identity, options={"verify_signature": False})
        return identity, float(claims["exp"])

    async def keep_fresh(self, client: httpx.AsyncClient, expires_at: float) -> None:
        """Replace the client's identity shortly before each one expires."""
        while True:
            await asyncio.sleep(max(1.0, expires_at - time.time() - IDENTITY_MARGIN))
            try:
                identity, expires_at = await self.fetch()
            except (httpx.HTTPError, BenchError) as exc:
                console.print(f"[yellow]identity refresh failed, retrying: {exc}[/]")
                expires_at = time.time() + IDENTITY_MARGIN + 1.0
                continue
            client.headers[IDENTITY_HEADER] = identity


# ---- the load ------------------------------------------------------------------------
async def _one_request(client: httpx.AsyncClient) -> str:
    """The answer's status code, or the transport error's name."""
    try:
        response = await client.get(LIST_PATH)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return str(response.status_code)


async def _worker(client: httpx.AsyncClient, window: Window, sample: Sample) -> None:
    while (started := time.perf_counter()) < window.end:
        outcome = await _one_request(client)
        if started >= window.start:
            sample.record(outcome, time.perf_counter() - started)


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


async def _cpu_in(window: Window) -> float:
    """CPU seconds this process spends inside the window."""
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    before = time.process_time()
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    return time.process_time() - before


async def _drive(client: httpx.AsyncClient, target: str, params: Params) -> Sample:
    sample = Sample(target=target, seconds=params.duration)
    window = Window.after(params.warmup, params.duration)
    async with asyncio.timeout(params.warmup + params.duration + REQUEST_TIMEOUT + 5.0):
        cpu = asyncio.create_task(_cpu_in(window))
        await asyncio.gather(*(_worker(client, window, sample) for _ in range(params.concurrency)))
        sample.cpu_seconds = await cpu
    return sample


async def measure_edge(targets: Targets, token: str, params: Params) -> Sample:
    limits = _limits(params.concurrency)
    async with _client(targets.edge, headers=_bearer(token), limits=limits) as client:
        return await _drive(client, "edge", params)


async def measure_direct(targets: Targets, identity: IdentitySource, params: Params) -> Sample:
    limits = _limits(params.concurrency)
    async with _client(targets.planner, headers=_bearer(identity.token), limits=limits) as client:
        current, expires_at = await identity.fetch()
        client.headers[IDENTITY_HEADER] = current
        refresher = asyncio.create_task(identity.keep_fresh(client, expires_at))
        try:
            return await _drive(client, "direct", params)
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


async def check_answers(targets: Targets, identity: IdentitySource, expected: int) -> None:
    """One list through each target before measuring: 200 and the same campaigns."""
    current, _ = await identity.fetch()
    checks = (
        (targets.edge, _bearer(identity.token)),
        (targets.planner, {**_bearer(identity.token), IDENTITY_HEADER: current}),
    )
    for base_url, headers in checks:
        async with _client(base_url, headers=headers) as client:
            response = await client.get(LIST_PATH)
        _expect(response, 200, f"list campaigns at {base_url}")
        if len(response.json()["items"]) != expected:
            raise BenchError(f"{base_url}: expected {expected} campaigns in the list")


async def run(targets: Targets, params: Params) -> dict[str, list[Sample]]:
    token = await prepare_account(targets.edge, params.campaigns)
    identity = IdentitySource(targets.gateway, token)
    await check_answers(targets, identity, min(params.campaigns, 50))
    samples: dict[str, list[Sample]] = {name: [] for name in TARGETS}
    for number in range(1, params.rounds + 1):
        for target in TARGETS:
            console.print(f"round {number}/{params.rounds}: {target} …")
            if target == "edge":
                sample = await measure_edge(targets, token, params)
            else:
                sample = await measure_direct(targets, identity, params)
            samples[target].append(sample)
    return samples


# ---- results -------------------------------------------------------------------------
def _percentiles(latencies: list[float]) -> tuple[float, float, float]:
    """p50, p90, p99 in milliseconds (NaN with fewer than two answers)."""
    if len(latencies) < 2:
        return (float("nan"),) * 3
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[89] * 1000, cuts[98] * 1000


def summarise(target: str, samples: list[Sample]) -> Summary:
    latencies = [value for sample in samples for value in sample.latencies]
    errors = sum(sum(sample.errors.values()) for sample in samples)
    seconds = sum(sample.seconds for sample in samples)
    cpu = sum(sample.cpu_seconds for sample in samples)
    p50, p90, p99 = _percentiles(latencies)
    return Summary(
        target=target,
        requests=len(latencies) + errors,
        errors=errors,
        rps=len(latencies) / seconds,
        p50=p50,
        p90=p90,
        p99=p99,
        generator_cpu=100 * cpu / seconds,
    )


def _ratio(edge: float, direct: float) -> str:
    return f"{edge / direct:.2f}" if direct > 0 else "-"


def results_table(direct: Summary, edge: Summary) -> Table:
    table = Table(title=f"GET {LIST_PATH} (authenticated)")
    columns = ("target", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "gen CPU")
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right", no_wrap=True)
    for s in (direct, edge):
        table.add_row(
            s.target,
            str(s.requests),
            str(s.errors),
            f"{s.rps:.1f}",
            f"{s.p50:.1f}",
            f"{s.p90:.1f}",
            f"{s.p99:.1f}",
            f"{s.generator_cpu:.0f}%",
        )
    table.add_section()
    table.add_row(
        "edge / direct",
        "",
        "",
        _ratio(edge.rps, direct.rps),
        _ratio(edge.p50, direct.p50),
        _ratio(edge.p90, direct.p90),
        _ratio(edge.p99, direct.p99),
        "",
        style="bold",
    )
    return table


def rounds_table(samples: dict[str, list[Sample]]) -> Table:
    table = Table(title="req/s per round")
    for column in ("round", "direct", "edge", "edge / direct"):
        table.add_column(column, justify="right")
    pairs = zip(samples["direct"], samples["edge"], strict=True)
    for number, (direct, edge) in enumerate(pairs, start=1):
        d_rps = len(direct.latencies) / direct.seconds
        e_rps = len(edge.latencies) / edge.seconds
        table.add_row(str(number), f"{d_rps:.1f}", f"{e_rps:.1f}", _ratio(e_rps, d_rps))
    return table


def context_table(params: Params, targets: Targets, load: tuple[float, ...]) -> Table:
    table = Table(title="context", show_header=False)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    rows = {
        "cpu count": f"{os.cpu_count()} (usable: {usable})",
        "load average (before; after)": f"{_loads(load)}; {_loads(os.getloadavg())}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "httpx": httpx.__version__,
        "stack": targets.mode,
        "edge": targets.edge,
        "planner (direct)": targets.planner,
        "gateway (identity)": targets.gateway,
        "concurrency": str(params.concurrency),
        "warm-up / measured": f"{params.warmup:g} s / {params.duration:g} s per run",
        "rounds": f"{params.rounds} (order: {', '.join(TARGETS)})",
        "campaigns in the list": str(min(params.campaigns, 50)),
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def _loads(load: tuple[float, ...]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def print_errors(samples: dict[str, list[Sample]]) -> None:
    for target, runs in samples.items():
        errors: Counter[str] = sum((sample.errors for sample in runs), Counter())
        if errors:
            listed = ", ".join(f"{name} x{count}" for name, count in errors.most_common())
            console.print(f"[red]{target} errors: {listed}[/]")
        if target == "edge" and errors.get("429"):
            console.print("[yellow]429 = Traefik flood-shield (300 req/s per IP): edge capped.[/]")


def render(
    params: Params, targets: Targets, load: tuple[float, ...], samples: dict[str, list[Sample]]
) -> None:
    direct, edge = (summarise(name, samples[name]) for name in TARGETS)
    console.print(context_table(params, targets, load))
    if params.rounds > 1:
        console.print(rounds_table(samples))
    console.print(results_table(direct, edge))
    print_errors(samples)


# ---- entry ---------------------------------------------------------------------------
def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    load = os.getloadavg()
    try:
        with targets_of(params) as targets:
            _loopback_only(targets)
            samples = asyncio.run(run(targets, params))
    except (StackError, BenchError, httpx.HTTPError) as exc:
        console.print(f"[bold red]{type(exc).__name__}: {exc}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    render(params, targets, load, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
