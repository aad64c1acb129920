"""Credit reservations per second that billing answers over NATS request/reply, and the
reserve and commit latency its callers see.

Creator and mining hold credits for a job before it runs (``reserve``) and charge them
when it is done (``commit``): NATS micro request/reply to the billing worker, each
question one PostgreSQL transaction (a conditional UPDATE of the workspace's account row
for the kind, the reservation and its ledger entries, the usage-alert check). Here a
reserve followed by its commit is one *job*, ``chat_messages`` x 1 with a reference of
its own. Three scenarios run one after the other, each a warm-up and then a measured
window:

- many tenants: each worker reserves and commits for a workspace of its own, so no two
  transactions want the same account row;
- one tenant (hot row): every worker on one workspace, so every reservation and every
  commit updates the same row;
- refusals: a workspace that has spent all its ``chat_messages``; every reservation is
  refused (``insufficient_credits``), so a job is one reserve and nothing is committed.

How to read it: ``jobs/s`` counts the jobs whose reserve started inside the window and
whose answers were the expected ones; p50/p90/p99 are per question, as the load generator
saw them (queueing in the worker included). ``billing worker`` is the worker process's
share of one core, ``postgres`` that of the server and its backends, ``nats`` that of the
server. An answer slower than ``--within`` (2 s, what creator waits) is an error, as it
would be for a caller.

Credits are granted the real way: the workspaces sign up through the gateway (the
``TenantCreated`` event brings billing's starter grant) and the first two scenarios'
workspaces get paid Agency invoices, signed Stripe ``invoice.paid`` events posted to
billing's webhook. A stack (PostgreSQL, NATS, the services; no Traefik) runs in a
temporary folder on free ports and is stopped at the end. See bench/README.md.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from pydantic import BaseModel
from rich.table import Table

from bai_contracts import BalanceQuery, CommitCredits, QuotaAnswer, ReserveCredits, quota_subject
from bai_platform.devstack import Stack
from bai_platform.devstack.stack import StackError
from bai_platform.rpc import Unreachable, ask
from bai_testing.stripe_events import Customer, signed
from bench._load import (
    BenchError,
    Window,
    client,
    console,
    expect,
    listed,
    loopback_only,
    machine_rows,
    own_stack,
    percentiles,
    process_cpu_seconds,
    raise_interrupt,
)

# Sign-ups come from one IP, more than the default per-IP quota (10 / 60 s) allows.
ENV = {"BAI_RATE_LIMITS": json.dumps({"ip_auth": {"limit": 1_000_000}})}
STACK_PARTS = ("postgres", "nats", "migrations", "services")
WEBHOOK = "/v1/billing/webhooks/stripe"

Kind = Literal["posts", "extraction_pages", "chat_messages"]
KIND: Kind = "chat_messages"
AMOUNT = 1
AGENCY_PRICE = "price_bai_agency_monthly"
AGENCY_CREDITS = 100_000  # chat_messages an Agency month grants (billing's catalogue)
# Only to size the grants: far above what one billing worker answers, so no run of the
# first two scenarios is refused for want of credits.
CEILING_JOBS_PER_SECOND = 5_000
SIGNUPS_AT_ONCE = 4  # a sign-up hashes a password
GRANT_WAIT = 60.0  # seconds for the grants to show in the balances

MANY, HOT, REFUSED = "many tenants", "one tenant (hot row)", "refusals (0 credits)"
SCENARIOS = (MANY, HOT, REFUSED)
REFERENCE = "nats bench request/reply ~50 µs (published anchor; not comparable)"


@dataclass(frozen=True)
class Params:
    concurrency: int
    warmup: float
    seconds: float
    within: float


@dataclass(frozen=True)
class Watched:
    """A process whose CPU time is read around the window (with its children: tree)."""

    name: str
    pid: int | None
    tree: bool = False


@dataclass
class Tenant:
    id: uuid.UUID
    granted: int = 0  # chat_messages available before the scenarios
    spent: int = 0  # committed by the scenario, warm-up and after the window included
    unsettled: int = 0  # reserved or maybe reserved, then no committed answer


@dataclass
class Tally:
    """What one scenario measured, in its window."""

    name: str
    seconds: float
    jobs: int = 0
    reserve: list[float] = field(default_factory=list)
    commit: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float | None] = field(default_factory=dict)  # seconds, by process


# ---- arguments -----------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument(
        "--within", type=float, default=2.0, help="seconds an answer may take (as creator)"
    )
    params = Params(**vars(parser.parse_args(argv)))
    if params.concurrency < 1 or min(params.seconds, params.within) <= 0 or params.warmup < 0:
        parser.error("concurrency, seconds and within must be positive")
    return params


# ---- CPU time of the processes -------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:  # the parent's pid
            found.append(int(entry.name))
    return found


def cpu_snapshot(process: Watched) -> dict[int, float] | None:
    """CPU seconds so far of the process (and its children), by pid; None if unreadable."""
    if process.pid is None:
        return None
    pids = [process.pid, *(_children(process.pid) if process.tree else [])]
    seconds = {pid: process_cpu_seconds(pid) for pid in pids}
    if seconds[process.pid] is None:
        return None
    return {pid: value for pid, value in seconds.items() if value is not None}


def cpu_between(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """CPU seconds used in between; a child that started in between counts from zero (one
    that ended in between is missed)."""
    if before is None or after is None:
        return None
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


async def cpu_in(window: Window, processes: Sequence[Watched]) -> dict[str, float | None]:
    """CPU seconds of this process (``generator``) and of ``processes`` inside the window."""
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    own = time.process_time()
    before = [cpu_snapshot(p) for p in processes]
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    after = [cpu_snapshot(p) for p in processes]
    used = {p.name: cpu_between(b, a) for p, b, a in zip(processes, before, after, strict=True)}
    return {**used, "generator": time.process_time() - own}


# ---- the stack -----------------------------------------------------------------------
def watched_of(stack: Stack) -> list[Watched]:
    def pid(name: str) -> int | None:
        process = stack.processes.get(name)
        return process.pid if process else None

    return [
        Watched("billing worker", pid("billing-worker")),
        Watched("postgres", pid("postgres"), tree=True),  # the backends are its children
        Watched("nats", pid("nats")),
    ]


# ---- set-up: workspaces and their credits --------------------------------------------
async def quota(nc: NatsClient, operation: str, question: BaseModel, within: float) -> QuotaAnswer:
    return await ask(nc, quota_subject(operation), question, QuotaAnswer, within=within)


async def available(nc: NatsClient, tenant: uuid.UUID) -> int:
    answer = await quota(nc, "balance", BalanceQuery(tenant_id=tenant), 5.0)
    return answer.balances.get(KIND, 0)


async def sign_up(gateway: httpx.AsyncClient) -> uuid.UUID:
    body = {
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
        "password": "bench-password-" + uuid.uuid4().hex[:8],
        "workspace": "Bench Quota",
    }
    response = await gateway.post("/v1/auth/signup", json=body)
    expect(response, 201, "sign up")
    return uuid.UUID(str(response.json()["tenant_id"]))


async def sign_up_many(gateway: httpx.AsyncClient, count: int) -> list[uuid.UUID]:
    tenants: list[uuid.UUID] = []
    while len(tenants) < count:
        batch = min(SIGNUPS_AT_ONCE, count - len(tenants))
        tenants += await asyncio.gather(*(sign_up(gateway) for _ in range(batch)))
    return tenants


async def pay_invoices(
    billing: httpx.AsyncClient, tenant: uuid.UUID, count: int, secret: str
) -> None:
    """``count`` paid Agency months (distinct invoices), as Stripe delivers them."""
    customer = Customer(tenant, AGENCY_PRICE)
    for period in range(count):
        event = customer.invoice("invoice.paid", created=int(time.time()), period=period)
        raw, signature = signed(event, secret)
        response = await billing.post(
            WEBHOOK,
            content=raw,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        )
        expect(response, 200, "Stripe invoice.paid webhook")


async def wait_for(nc: NatsClient, tenant: uuid.UUID, at_least: int) -> int:
    deadline = time.monotonic() + GRANT_WAIT
    while (balance := await available(nc, tenant)) < at_least:
        if time.monotonic() > deadline:
            raise BenchError(
                f"workspace {tenant}: {balance} {KIND} after {GRANT_WAIT:.0f} s, expected "
                f"at least {at_least} (are the billing worker and its grants running?)"
            )
        await asyncio.sleep(0.2)
    return balance


async def spend_all(nc: NatsClient, tenant: Tenant) -> None:
    """Reserve and commit everything the workspace has, so it has nothing left."""
    reference = f"bench-spend-{uuid.uuid4().hex}"
    held = await quota(
        nc,
        "reserve",
        ReserveCredits(tenant_id=tenant.id, kind=KIND, amount=tenant.granted, reference=reference),
        5.0,
    )
    spent = await quota(
        nc, "commit", CommitCredits(tenant_id=tenant.id, kind=KIND, reference=reference), 5.0
    )
    if not (held.ok and spent.ok) or await available(nc, tenant.id) != 0:
        raise BenchError(f"could not spend the starter {KIND} of {tenant.id}: {held}, {spent}")
    tenant.granted = 0


@dataclass(frozen=True)
class Workspaces:
    many: list[Tenant]
    hot: Tenant
    refused: Tenant
    starter: int  # chat_messages of the starter grant
    invoices_many: int  # Agency invoices paid per workspace
    invoices_hot: int


def invoices_for(jobs_per_second: float, params: Params) -> int:
    return max(1, math.ceil(jobs_per_second * (params.warmup + params.seconds) / AGENCY_CREDITS))


async def set_up(stack: Stack, nc: NatsClient, params: Params) -> Workspaces:
    gateway_url, billing_url = stack.service_url("gateway"), stack.service_url("billing")
    loopback_only([gateway_url, billing_url])
    per_many = invoices_for(CEILING_JOBS_PER_SECOND / params.concurrency, params)
    per_hot = invoices_for(CEILING_JOBS_PER_SECOND, params)
    started = time.perf_counter()
    async with client(gateway_url) as gateway, client(billing_url) as billing:
        ids = await sign_up_many(gateway, params.concurrency + 2)
        many, hot, refused = [Tenant(i) for i in ids[:-2]], Tenant(ids[-2]), Tenant(ids[-1])
        secret = stack.settings.stripe_webhook_secret
        for tenant in many:
            await pay_invoices(billing, tenant.id, per_many, secret)
        await pay_invoices(billing, hot.id, per_hot, secret)
    # The starter grant of the one workspace that gets no invoice says how big it is.
    starter = await wait_for(nc, refused.id, 1)
    refused.granted = starter
    for tenant, invoices in [*((t, per_many) for t in many), (hot, per_hot)]:
        tenant.granted = await wait_for(nc, tenant.id, starter + invoices * AGENCY_CREDITS)
    await spend_all(nc, refused)
    console.print(
        f"  [dim]{len(ids)} workspaces signed up and granted in "
        f"{time.perf_counter() - started:.1f} s[/]"
    )
    return Workspaces(many, hot, refused, starter, per_many, per_hot)


# ---- the load ------------------------------------------------------------------------
def _failure(operation: str, exc: Unreachable) -> str:
    cause = exc.__cause__
    return f"{operation} {type(cause).__name__ if cause else 'error answer'}"


async def one_job(
    nc: NatsClient, tenant: Tenant, refusal: bool, within: float
) -> tuple[float | None, float | None, str | None]:
    """A reserve and, when it was granted, its commit: their latencies when the answers
    were the expected ones, and what went wrong otherwise."""
    reference = f"bench-{uuid.uuid4().hex}"
    reserve = ReserveCredits(tenant_id=tenant.id, kind=KIND, amount=AMOUNT, reference=reference)
    started = time.perf_counter()
    try:
        held = await quota(nc, "reserve", reserve, within)
    except Unreachable as exc:
        tenant.unsettled += AMOUNT  # it may have been held all the same
        return None, None, _failure("reserve", exc)
    reserved = time.perf_counter()
    if refusal:
        if held.ok:
            tenant.unsettled += AMOUNT
            return None, None, "reserve granted"
        if held.code != "insufficient_credits":
            return None, None, f"reserve {held.code}"
        return reserved - started, None, None
    if not held.ok:
        return None, None, f"reserve refused ({held.code})"
    commit = CommitCredits(tenant_id=tenant.id, kind=KIND, reference=reference)
    try:
        spent = await quota(nc, "commit", commit, within)
    except Unreachable as exc:
        tenant.unsettled += AMOUNT
        return reserved - started, None, _failure("commit", exc)
    if not spent.ok:
        tenant.unsettled += AMOUNT
        return reserved - started, None, f"commit {spent.code}"
    tenant.spent += AMOUNT
    return reserved - started, time.perf_counter() - reserved, None


async def worker(
    nc: NatsClient, tenant: Tenant, refusal: bool, window: Window, tally: Tally, within: float
) -> None:
    while (started := time.perf_counter()) < window.end:
        reserve, commit, error = await one_job(nc, tenant, refusal, within)
        if started < window.start:
            continue
        if reserve is not None:
            tally.reserve.append(reserve)
        if commit is not None:
            tally.commit.append(commit)
        if error is not None:
            tally.errors[error] += 1
        else:
            tally.jobs += 1


async def measure(
    nc: NatsClient,
    name: str,
    tenants: Sequence[Tenant],
    params: Params,
    processes: Sequence[Watched],
) -> Tally:
    console.print(f"{name} …")
    tally = Tally(name=name, seconds=params.seconds)
    window = Window.after(params.warmup, params.seconds)
    refusal = name == REFUSED
    async with asyncio.timeout(params.warmup + params.seconds + 2 * params.within + 10.0):
        cpu = asyncio.create_task(cpu_in(window, processes))
        await asyncio.gather(
            *(worker(nc, t, refusal, window, tally, params.within) for t in tenants)
        )
        tally.cpu = await cpu
    return tally


@dataclass
class Outcome:
    workspaces: Workspaces
    tallies: list[Tally]
    ledger: list[tuple[str, int, int, int]]  # scenario, expected, found, unsettled


async def run(stack: Stack, params: Params, processes: Sequence[Watched]) -> Outcome:
    nc = await nats.connect(stack.nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        spaces = await set_up(stack, nc, params)
        plan: list[tuple[str, list[Tenant]]] = [
            (MANY, spaces.many),
            (HOT, [spaces.hot] * params.concurrency),
            (REFUSED, [spaces.refused] * params.concurrency),
        ]
        tallies = [await measure(nc, name, t, params, processes) for name, t in plan]
        ledger = []
        for name, tenants in plan:
            distinct = list({id(t): t for t in tenants}.values())
            expected = sum(t.granted - t.spent for t in distinct)
            found = sum([await available(nc, t.id) for t in distinct])
            ledger.append((name, expected, found, sum(t.unsettled for t in distinct)))
    finally:
        await nc.close()
    return Outcome(spaces, tallies, ledger)


# ---- results -------------------------------------------------------------------------
def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _cpu(seconds: float | None, window: float) -> str:
    return "-" if seconds is None else f"{100 * seconds / window:.0f}%"


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        left = column in ("scenario", "question")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    return table


def results_table(tallies: list[Tally]) -> Table:
    columns = ("scenario", "jobs", "errors", "jobs/s", "question", "p50 ms", "p90 ms", "p99 ms")
    table = _table("billing's quota questions over NATS request/reply", columns)
    table.caption = f"a job = a reserve and its commit (refusals: one refused reserve); {REFERENCE}"
    for t in tallies:
        table.add_row(
            t.name,
            str(t.jobs),
            str(sum(t.errors.values())),
            f"{t.jobs / t.seconds:.1f}",
            "reserve (refused)" if t.name == REFUSED else "reserve",
            *(_ms(v) for v in percentiles(t.reserve)),
        )
        if t.name != REFUSED:
            table.add_row("", "", "", "", "commit", *(_ms(v) for v in percentiles(t.commit)))
    return table


def process_table(tallies: list[Tally], processes: Sequence[Watched]) -> Table:
    names = [p.name for p in processes]
    columns = ["scenario", names[0], "jobs per worker CPU-s", *names[1:], "generator"]
    table = _table("the processes in the window (CPU: 100% = one core)", columns)
    for t in tallies:
        worker_cpu = t.cpu.get(names[0])
        per_cpu = f"{t.jobs / worker_cpu:.0f}" if worker_cpu else "-"
        table.add_row(
            t.name,
            _cpu(worker_cpu, t.seconds),
            per_cpu,
            *(_cpu(t.cpu.get(name), t.seconds) for name in [*names[1:], "generator"]),
        )
    return table


def context_table(
    params: Params,
    stack: Stack,
    load: tuple[float, ...],
    spaces: Workspaces,
    processes: Sequence[Watched],
) -> Table:
    table = Table(title="context", show_header=False)
    pids = ", ".join(f"{p.name} {p.pid or 'unknown'}" for p in processes)
    rows = {
        **machine_rows(load),
        "nats-py": version("nats-py"),
        "stack": "own stack (temporary, free ports; no Traefik)",
        "processes": pids,
        "nats": stack.nats_url,
        "question": f"{KIND} x {AMOUNT}, a new reference per job",
        "answer timeout": f"{params.within:g} s (later counts as an error, as for creator)",
        "concurrency": f"{params.concurrency} workers, one NATS connection",
        "warm-up / measured": f"{params.warmup:g} s / {params.seconds:g} s per scenario",
        "order": ", ".join(SCENARIOS),
        "credits": (
            f"starter {spaces.starter}; + {spaces.invoices_many} Agency invoice(s) per "
            f"many-tenants workspace ({len(spaces.many)}), {spaces.invoices_hot} for the hot "
            "one; the refusals workspace spent its starter grant"
        ),
        "reference": REFERENCE,
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def print_notes(outcome: Outcome) -> None:
    for tally in outcome.tallies:
        if tally.errors:
            console.print(f"[red]{tally.name} errors: {listed(tally.errors)}[/]")
    for name, expected, found, unsettled in outcome.ledger:
        note = f"ledger, {name}: {found} {KIND} left, {expected} expected"
        if found == expected:
            console.print(f"[green]{note}[/]")
        elif expected - unsettled <= found <= expected:
            console.print(f"[yellow]{note} ({unsettled} held by unanswered questions)[/]")
        else:
            console.print(f"[red]{note}: the ledger does not add up[/]")


def render(
    params: Params,
    stack: Stack,
    load: tuple[float, ...],
    processes: Sequence[Watched],
    outcome: Outcome,
) -> None:
    console.print(context_table(params, stack, load, outcome.workspaces, processes))
    console.print(results_table(outcome.tallies))
    console.print(process_table(outcome.tallies, processes))
    print_notes(outcome)


# ---- entry ---------------------------------------------------------------------------
@contextlib.contextmanager
def stack_for_quota() -> Iterator[Stack]:
    with own_stack(ENV, only=STACK_PARTS) as stack:
        if "billing-worker" not in stack.processes:
            raise BenchError("the billing worker (it answers the quota questions) did not start")
        yield stack


def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    load = os.getloadavg()
    try:
        with stack_for_quota() as stack:
            processes = watched_of(stack)
            outcome = asyncio.run(run(stack, params, processes))
    except (StackError, BenchError, Unreachable, NatsError, httpx.HTTPError) as exc:
        console.print(f"[bold red]{type(exc).__name__}: {exc}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    render(params, stack, load, processes, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
