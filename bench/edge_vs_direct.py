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
import functools
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import jwt
from rich.table import Table

from bai_platform.devstack.stack import StackError
from bai_platform.identity import IDENTITY_HEADER
from bench._load import (
    BenchError,
    Sample,
    Summary,
    bearer,
    client,
    console,
    drive,
    error_counts,
    expect,
    listed,
    loopback_only,
    machine_rows,
    own_stack,
    pool_limits,
    raise_interrupt,
    summarise,
)

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
# Fetch a new identity when the current one has less than this to live (the gateway
# hands out a cached one with at least 15 s left; the planner allows 5 s of leeway).
IDENTITY_MARGIN = 10.0
TARGETS = ("direct", "edge")


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
    planner_pid: int | None = None  # its CPU per request is measured when known


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
    loopback_only((targets.edge, targets.planner, targets.gateway))


# ---- the stack -----------------------------------------------------------------------
@contextlib.contextmanager
def whole_stack() -> Iterator[Targets]:
    """A whole stack in a temporary folder on free ports, stopped on the way out."""
    with own_stack(BENCH_ENV) as stack:
        yield Targets(
            mode="own stack (temporary, free ports)",
            edge=stack.edge_url,
            planner=stack.service_url("planner"),
            gateway=stack.service_url("gateway"),
            planner_pid=stack.processes["planner-api"].pid,
        )


def targets_of(params: Params) -> contextlib.AbstractContextManager[Targets]:
    if params.edge_url is None or params.planner_url is None:
        return whole_stack()
    return contextlib.nullcontext(
        Targets(
            mode="running stack",
            edge=params.edge_url.rstrip("/"),
            planner=params.planner_url.rstrip("/"),
            gateway=(params.gateway_url or DEFAULT_GATEWAY_URL).rstrip("/"),
        )
    )


# ---- set-up: an account, campaigns, an identity ----------------------------------------
async def prepare_account(edge_url: str, campaigns: int) -> str:
    """Sign up a fresh workspace through the edge, fill it; returns the access token."""
    async with client(edge_url) as edge:
        signup = {
            "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
            "password": "bench-password-" + uuid.uuid4().hex[:8],
            "workspace": "Bench Coffee",
        }
        response = await edge.post("/v1/auth/signup", json=signup)
        expect(response, 201, "sign up")
        token = str(response.json()["access_token"])
        brand = await edge.post(
            "/v1/planner/brands", json={"name": "Bench Coffee"}, headers=bearer(token)
        )
        expect(brand, 201, "create a brand")
        for number in range(1, campaigns + 1):
            body = {"brand_id": brand.json()["id"], "name": f"Bench campaign {number}"}
            created = await edge.post(LIST_PATH, json=body, headers=bearer(token))
            expect(created, 201, "create a campaign")
    return token


@dataclass(frozen=True)
class IdentitySource:
    """``X-BAI-Identity`` for direct calls, from the gateway's ForwardAuth endpoint."""

    gateway_url: str
    token: str

    async def fetch(self) -> tuple[str, float]:
        """The identity and when it expires (epoch seconds)."""
        async with client(self.gateway_url) as gateway:
            # The identity is minted for the service of the forwarded path (its audience).
            forwarded = {"X-Forwarded-Uri": LIST_PATH, "X-Forwarded-Method": "GET"}
            response = await gateway.get("/auth/verify", headers=bearer(self.token) | forwarded)
        expect(response, 200, "ForwardAuth /auth/verify")
        identity = response.headers.get(IDENTITY_HEADER)
        if not identity:
            raise BenchError(f"/auth/verify answered without {IDENTITY_HEADER}")
        claims = jwt.decode(identity, options={"verify_signature": False})
        return identity, float(claims["exp"])

    async def keep_fresh(self, http: httpx.AsyncClient, expires_at: float) -> None:
        """Replace the client's identity shortly before each one expires."""
        while True:
            await asyncio.sleep(max(1.0, expires_at - time.time() - IDENTITY_MARGIN))
            try:
                identity, expires_at = await self.fetch()
            except (httpx.HTTPError, BenchError) as exc:
                console.print(f"[yellow]identity refresh failed, retrying: {exc}[/]")
                expires_at = time.time() + IDENTITY_MARGIN + 1.0
                continue
            http.headers[IDENTITY_HEADER] = identity


# ---- the load ------------------------------------------------------------------------
async def _drive(
    http: httpx.AsyncClient, target: str, params: Params, planner_pid: int | None
) -> Sample:
    send = functools.partial(http.get, LIST_PATH)
    return await drive(
        [send] * params.concurrency,  # the workers share the client and its pool
        target,
        warmup=params.warmup,
        duration=params.duration,
        server_pid=planner_pid,
    )


async def measure_edge(targets: Targets, token: str, params: Params) -> Sample:
    limits = pool_limits(params.concurrency)
    async with client(targets.edge, headers=bearer(token), limits=limits) as http:
        return await _drive(http, "edge", params, targets.planner_pid)


async def measure_direct(targets: Targets, identity: IdentitySource, params: Params) -> Sample:
    limits = pool_limits(params.concurrency)
    headers = bearer(identity.token)
    async with client(targets.planner, headers=headers, limits=limits) as http:
        current, expires_at = await identity.fetch()
        http.headers[IDENTITY_HEADER] = current
        refresher = asyncio.create_task(identity.keep_fresh(http, expires_at))
        try:
            return await _drive(http, "direct", params, targets.planner_pid)
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


async def check_answers(targets: Targets, identity: IdentitySource, expected: int) -> None:
    """One list through each target before measuring: 200 and the same campaigns."""
    current, _ = await identity.fetch()
    checks = (
        (targets.edge, bearer(identity.token)),
        (targets.planner, {**bearer(identity.token), IDENTITY_HEADER: current}),
    )
    for base_url, headers in checks:
        async with client(base_url, headers=headers) as http:
            response = await http.get(LIST_PATH)
        expect(response, 200, f"list campaigns at {base_url}")
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
def _ratio(edge: float, direct: float) -> str:
    return f"{edge / direct:.2f}" if direct > 0 else "-"


def results_table(direct: Summary, edge: Summary) -> Table:
    table = Table(title=f"GET {LIST_PATH} (authenticated)")
    columns = (
        "target",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "gen CPU",
        "planner CPU/req",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right", no_wrap=True)
    for s in (direct, edge):
        table.add_row(
            s.name,
            str(s.requests),
            str(s.errors),
            f"{s.rps:.1f}",
            f"{s.p50:.1f}",
            f"{s.p90:.1f}",
            f"{s.p99:.1f}",
            f"{s.generator_cpu:.0f}%",
            _cpu_per_request(s),
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
        "",
        style="bold",
    )
    return table


def _cpu_per_request(s: Summary) -> str:
    """Milliseconds of the planner's CPU per answered request: unlike req/s, it hardly
    moves when other processes share the machine."""
    if s.server_cpu is None or not s.rps:
        return "-"
    return f"{10 * s.server_cpu / s.rps:.2f} ms"


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
    rows = {
        **machine_rows(load),
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


def print_errors(samples: dict[str, list[Sample]]) -> None:
    for target, runs in samples.items():
        errors = error_counts(runs)
        if errors:
            console.print(f"[red]{target} errors: {listed(errors)}[/]")
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
def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
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
