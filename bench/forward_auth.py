"""ForwardAuth decisions per second of one gateway process, and their p50/p90/p99 latency.

Traefik asks the gateway ``GET /auth/verify`` before every protected request. This script
asks it the same way, straight at one gateway process (no Traefik): ``Authorization:
Bearer ...``, ``X-Forwarded-Uri: /v1/planner/campaigns``, ``X-Forwarded-Method: GET``.
Three scenarios run one after the other, each a warm-up and then a measured window:

- cached access token: one user access token on every request. The decision comes from
  the gateway's cache; the rate limiter still counts the credential and the tenant.
- cached API key: the same with a ``bai_...`` API key of that workspace.
- uncached access token: a new access token on every request (minted beforehand by
  rotating a refresh token), so every decision verifies the JWT, reads the membership
  from PostgreSQL and mints an identity. No token repeats in a run: when the pool runs
  out, the run is discarded and repeated with a larger pool.

How to read it: ``decisions/s`` counts the 200 answers to requests that started inside
the window; p50/p90/p99 are per request, as the load generator saw them (its own queueing
included). Everything shares the same CPUs: ``gen CPU`` is the load generator's share of
one core, ``gw CPU`` the gateway process's (one process uses at most about one core).
``gw CPU per decision`` is the cost of one decision whatever the machine's other load;
decisions/s is what this machine gave with the generator beside the gateway.

The load generator is one asyncio process: ``--concurrency`` workers, each with its own
httpx client and keep-alive connection. By default a stack (PostgreSQL, NATS, the
services; no Traefik) runs in a temporary folder on free ports, with quotas so high that
the limiter counts every decision and refuses none, and is stopped at the end;
``--gateway-url`` uses a running gateway instead. See bench/README.md.
"""

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx
from rich.table import Table

from bai_platform.devstack.stack import StackError
from bai_platform.identity import IDENTITY_HEADER
from bench._load import (
    BenchError,
    Sample,
    Send,
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

# The limiter counts every decision (its cost is in the figures), but no quota is reached:
# not per IP (sign-up, logins and the refreshes that mint the token pool), nor per
# credential or tenant (the measured decisions).
LIFTED = {"limit": 10_000_000}
BENCH_ENV = {
    "BAI_RATE_LIMITS": json.dumps(
        {"ip_auth": LIFTED, "credential": LIFTED, "tenant_plans": {"starter": LIFTED}}
    )
}
STACK_PARTS = ("postgres", "nats", "migrations", "services")

VERIFY_PATH = "/auth/verify"
FORWARDED = {"X-Forwarded-Uri": "/v1/planner/campaigns", "X-Forwarded-Method": "GET"}
KEY_SCOPES = ["planner:read", "planner:write"]
SCENARIOS = ("cached access token", "cached API key", "uncached access token")

# Refresh-token chains that mint the pool side by side (the sign-up's and logins' own).
MINT_CHAINS = 4
POOL_HEADROOM = 1.5  # pool = expected decisions in warm-up + window x this
POOL_ATTEMPTS = 3


# One client, and so one keep-alive connection, per worker: workers sharing one client's
# pool cost the load generator time per request in proportion to the pool's size, and the
# generator then limits the figures more than the gateway does.
Workers = list[httpx.AsyncClient]


@dataclass(frozen=True)
class Params:
    concurrency: int
    warmup: float
    duration: float
    pool: int
    gateway_url: str | None


@dataclass(frozen=True)
class Gateway:
    mode: str
    url: str
    pid: int | None  # to read its CPU time; None for a gateway this script did not start
    quotas: str


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    access_token: str
    refresh_token: str
    api_key: str


@dataclass
class TokenPool:
    """Access tokens handed out in order; past the end they repeat (and hit the cache)."""

    tokens: list[str]
    taken: int = 0
    first_at: float | None = None
    ran_out_at: float | None = None

    def take(self) -> str:
        now = time.perf_counter()
        if self.first_at is None:
            self.first_at = now
        if self.taken == len(self.tokens):
            self.ran_out_at = now
        token = self.tokens[self.taken % len(self.tokens)]
        self.taken += 1
        return token

    @property
    def repeated(self) -> int:
        return max(0, self.taken - len(self.tokens))

    def fresh_rate(self) -> float:
        """Tokens per second used before the pool ran out."""
        if self.first_at is None or self.ran_out_at is None:
            return 0.0  # it did not run out
        return len(self.tokens) / max(self.ran_out_at - self.first_at, 1e-3)


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    pools: list[TokenPool] = field(default_factory=list)  # uncached attempts, last counts


# ---- arguments -----------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--pool", type=int, default=3000, help="first uncached token pool")
    parser.add_argument(
        "--gateway-url", help="a running gateway (e.g. http://127.0.0.1:8101) instead of a stack"
    )
    params = Params(**vars(parser.parse_args(argv)))
    if min(params.concurrency, params.pool) < 1 or params.duration <= 0 or params.warmup < 0:
        parser.error("concurrency, pool and duration must be positive")
    return params


# ---- the gateway ---------------------------------------------------------------------
@contextlib.contextmanager
def own_gateway() -> Iterator[Gateway]:
    with own_stack(BENCH_ENV, only=STACK_PARTS) as stack:
        process = stack.processes.get("gateway-api")
        yield Gateway(
            mode="own stack (temporary, free ports; no Traefik)",
            url=stack.service_url("gateway"),
            pid=process.pid if process else None,
            quotas="lifted: every decision counted, none refused",
        )


def gateway_of(params: Params) -> contextlib.AbstractContextManager[Gateway]:
    if params.gateway_url is None:
        return own_gateway()
    console.print(
        "[yellow]Using a running gateway: its quotas apply. The token pool alone needs "
        "thousands of refreshes, which the default per-IP quota (10 / 60 s) refuses, and "
        "the default per-credential quota (600 / 60 s) answers 429 within a second.[/]"
    )
    url = params.gateway_url.rstrip("/")
    return contextlib.nullcontext(Gateway("running gateway", url, None, "the running gateway's"))


# ---- set-up: an account, an API key, a pool of access tokens ---------------------------
async def sign_up(gateway: httpx.AsyncClient) -> Account:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    password = "bench-password-" + uuid.uuid4().hex[:8]
    body = {"email": email, "password": password, "workspace": "Bench Coffee"}
    response = await gateway.post("/v1/auth/signup", json=body)
    expect(response, 201, "sign up")
    tokens = response.json()
    access_token = str(tokens["access_token"])
    to_keys = {"X-Forwarded-Uri": "/v1/auth/api-keys", "X-Forwarded-Method": "POST"}
    api_key = await create_api_key(gateway, await identity_of(gateway, access_token, to_keys))
    return Account(email, password, access_token, str(tokens["refresh_token"]), api_key)


async def identity_of(
    gateway: httpx.AsyncClient, credential: str, forwarded: dict[str, str] = FORWARDED
) -> str:
    """One ForwardAuth decision, checked: 200 with an ``X-BAI-Identity`` (for the service
    of the ``forwarded`` path: an identity is good for that service only)."""
    response = await gateway.get(VERIFY_PATH, headers={**forwarded, **bearer(credential)})
    expect(response, 200, f"ForwardAuth {VERIFY_PATH}")
    identity = response.headers.get(IDENTITY_HEADER)
    if not identity:
        raise BenchError(f"{VERIFY_PATH} answered without {IDENTITY_HEADER}")
    return str(identity)


async def create_api_key(gateway: httpx.AsyncClient, identity: str) -> str:
    body = {"name": "bench", "scopes": KEY_SCOPES}
    response = await gateway.post(
        "/v1/auth/api-keys", json=body, headers={IDENTITY_HEADER: identity}
    )
    expect(response, 201, "create an API key")
    key = str(response.json()["key"])
    if not key.startswith("bai_"):
        raise BenchError("the API key does not look like bai_...")
    return key


@dataclass
class TokenMint:
    """New access tokens by rotating refresh tokens, on a few chains side by side."""

    gateway: httpx.AsyncClient
    heads: list[str]  # the next refresh token of each chain

    @classmethod
    async def open(cls, gateway: httpx.AsyncClient, account: Account) -> "TokenMint":
        """The sign-up's chain plus one per login (a login hashes a password: a few only)."""
        heads = [account.refresh_token]
        for _ in range(MINT_CHAINS - 1):
            body = {"email": account.email, "password": account.password}
            response = await gateway.post("/v1/auth/login", json=body)
            expect(response, 200, "log in")
            heads.append(str(response.json()["refresh_token"]))
        return cls(gateway, heads)

    async def mint(self, count: int) -> list[str]:
        started = time.perf_counter()
        whole, rest = divmod(count, len(self.heads))
        shares = [whole + (index < rest) for index in range(len(self.heads))]
        chains = await asyncio.gather(*(self._chain(i, n) for i, n in enumerate(shares)))
        tokens = [token for chain in chains for token in chain]
        seconds = time.perf_counter() - started
        console.print(f"  [dim]minted {len(tokens)} access tokens in {seconds:.1f} s[/]")
        return tokens

    async def _chain(self, index: int, count: int) -> list[str]:
        tokens: list[str] = []
        for _ in range(count):
            body = {"refresh_token": self.heads[index]}
            response = await self.gateway.post("/v1/auth/refresh", json=body)
            expect(response, 200, "refresh")
            answer = response.json()
            self.heads[index] = str(answer["refresh_token"])
            tokens.append(str(answer["access_token"]))
        return tokens


# ---- the scenarios -------------------------------------------------------------------
def _headers(credential: str) -> dict[str, str]:
    return {**FORWARDED, **bearer(credential)}


def _fixed(workers: Workers, credential: str) -> list[Send]:
    headers = _headers(credential)
    return [functools.partial(http.get, VERIFY_PATH, headers=headers) for http in workers]


def _from_pool(workers: Workers, pool: TokenPool) -> list[Send]:
    def sender(http: httpx.AsyncClient) -> Send:
        async def send() -> httpx.Response:
            return await http.get(VERIFY_PATH, headers=_headers(pool.take()))

        return send

    return [sender(http) for http in workers]


async def measure(name: str, sends: list[Send], gw: Gateway, params: Params) -> Sample:
    console.print(f"{name} …")
    return await drive(
        sends, name, warmup=params.warmup, duration=params.duration, server_pid=gw.pid
    )


def next_pool_size(pool: TokenPool, sample: Sample, params: Params) -> int:
    """Enough tokens for the warm-up and the window, at the higher of two rates.

    The rate before the pool ran out includes the start (connections, a cold database
    pool), so it runs low; the discarded window's rate includes cache hits, so it runs high.
    """
    rate = max(pool.fresh_rate(), len(sample.latencies) / sample.seconds)
    expected = rate * (params.warmup + params.duration)
    return math.ceil(expected * POOL_HEADROOM) + params.concurrency


async def measure_uncached(
    workers: Workers, mint: TokenMint, gw: Gateway, params: Params, outcome: Outcome
) -> Sample:
    size = params.pool
    while True:
        pool = TokenPool(await mint.mint(size))
        outcome.pools.append(pool)
        sample = await measure(SCENARIOS[2], _from_pool(workers, pool), gw, params)
        if not pool.repeated or len(outcome.pools) == POOL_ATTEMPTS:
            return sample
        size = next_pool_size(pool, sample, params)
        console.print(
            f"[yellow]  the pool of {len(pool.tokens)} ran out (~{pool.fresh_rate():.0f} "
            f"decisions/s); run discarded, again with {size} new tokens[/]"
        )


async def run(gw: Gateway, params: Params) -> Outcome:
    outcome = Outcome()
    async with contextlib.AsyncExitStack() as stack:
        setup = await stack.enter_async_context(client(gw.url))
        account = await sign_up(setup)
        await identity_of(setup, account.api_key)  # the key works before it is measured
        mint = await TokenMint.open(setup, account)
        workers = [
            await stack.enter_async_context(client(gw.url, limits=pool_limits(1)))
            for _ in range(params.concurrency)
        ]
        cached = zip(SCENARIOS[:2], (account.access_token, account.api_key), strict=True)
        for name, credential in cached:
            outcome.samples.append(await measure(name, _fixed(workers, credential), gw, params))
        outcome.samples.append(await measure_uncached(workers, mint, gw, params, outcome))
    return outcome


# ---- results -------------------------------------------------------------------------
def _cpu(share: float | None) -> str:
    return "-" if share is None else f"{share:.0f}%"


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == "scenario" else "right", no_wrap=True)
    return table


def results_table(summaries: list[Summary]) -> Table:
    columns = ("decisions", "errors", "decisions/s", "p50 ms", "p90 ms", "p99 ms", "gen CPU")
    table = _table(f"ForwardAuth GET {VERIFY_PATH}, one gateway process", ("scenario", *columns))
    for s in summaries:
        table.add_row(
            s.name,
            str(s.requests),
            str(s.errors),
            f"{s.rps:.1f}",
            f"{s.p50:.1f}",
            f"{s.p90:.1f}",
            f"{s.p99:.1f}",
            _cpu(s.generator_cpu),
        )
    return table


def gateway_table(summaries: list[Summary]) -> Table:
    columns = ("scenario", "gw CPU", "decisions per gw CPU-s", "gw CPU per decision")
    table = _table("the gateway process in the window (CPU: 100% = one core)", columns)
    for s in summaries:
        if not s.server_cpu or not s.rps:
            table.add_row(s.name, "-", "-", "-")
            continue
        per_second = s.rps / (s.server_cpu / 100)
        table.add_row(
            s.name, _cpu(s.server_cpu), f"{per_second:.0f}", f"{1000 / per_second:.2f} ms"
        )
    return table


def context_table(params: Params, gw: Gateway, load: tuple[float, ...], pools: int) -> Table:
    discarded = f"; {pools - 1} run(s) discarded, the pool ran out" if pools > 1 else ""
    table = Table(title="context", show_header=False)
    rows = {
        **machine_rows(load),
        "stack": gw.mode,
        "gateway": f"{gw.url} (pid {gw.pid or 'unknown'})",
        "quotas": gw.quotas,
        "request": f"GET {VERIFY_PATH}, forwarded: {' '.join(reversed(FORWARDED.values()))}",
        "concurrency": str(params.concurrency),
        "warm-up / measured": f"{params.warmup:g} s / {params.duration:g} s per scenario",
        "order": ", ".join(SCENARIOS),
        "uncached token pool": f"{params.pool} tokens first{discarded}",
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def print_notes(outcome: Outcome) -> None:
    for sample in outcome.samples:
        errors = error_counts([sample])
        if errors:
            console.print(f"[red]{sample.name} errors: {listed(errors)}[/]")
        if errors.get("429"):
            console.print("[yellow]429 = a quota of the gateway: the figures show the limit.[/]")
    pool = outcome.pools[-1]
    used = min(pool.taken, len(pool.tokens))
    note = f"uncached access token: {pool.taken} requests used {used} distinct tokens"
    if pool.repeated:
        note += f"; [red]{pool.repeated} repeated a token (cache hits)[/]"
    console.print(f"{note} (pool {len(pool.tokens)}, warm-up included)")


def render(params: Params, gw: Gateway, load: tuple[float, ...], outcome: Outcome) -> None:
    summaries = [summarise(sample.name, [sample]) for sample in outcome.samples]
    console.print(context_table(params, gw, load, len(outcome.pools)))
    console.print(results_table(summaries))
    console.print(gateway_table(summaries))
    print_notes(outcome)


# ---- entry ---------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    load = os.getloadavg()
    try:
        with gateway_of(params) as gw:
            loopback_only([gw.url])
            outcome = asyncio.run(run(gw, params))
    except (StackError, BenchError, httpx.HTTPError) as exc:
        console.print(f"[bold red]{type(exc).__name__}: {exc}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    render(params, gw, load, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
