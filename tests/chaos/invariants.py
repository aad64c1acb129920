"""The promises the chaos suite checks after recovery, read straight from PostgreSQL and
JetStream as an operator would (a superuser connection, the NATS admin user).

- **content:** every post ``draft_ready`` with content version 1; exactly one generation
  job per post, ``completed`` with its credits ``committed``; exactly one content version
  per job;
- **credits:** on every account of the run's workspaces the balance is the sum of its
  ledger and nothing is reserved; no reservation is left ``held``; one reservation and one
  commit per generation job, under the job's id;
- **messages:** every service's outbox is empty; every durable consumer has nothing
  pending and nothing awaiting an ack; the dead letters are listed (the suite expects none).
"""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import nats

from bai_contracts import STREAMS
from bai_platform.deadletter import list_dead_letters
from bai_platform.devstack import SERVICES, Stack

DRAIN_SECONDS = 120.0  # outboxes and consumers empty within this once the work is done


@dataclass
class Verdicts:
    """Each invariant checked, with what was found; the failed ones."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, found: object) -> None:
        self.lines.append(f"{'ok  ' if ok else 'FAIL'} {name}: {found}")
        if not ok:
            self.failures.append(f"{name}: {found}")

    def table(self) -> str:
        return "\n".join(["== invariants ==", *self.lines])


async def content(db: asyncpg.Connection, tenants: list[UUID], posts: int, v: Verdicts) -> None:
    states = await _counts(
        db, "SELECT state, content_version FROM planner.posts WHERE tenant_id = ANY($1)", tenants
    )
    v.check("every post draft_ready at version 1", states == {("draft_ready", 1): posts}, states)
    jobs_per_post = await db.fetch(
        "SELECT post_id, count(*) AS jobs FROM creator.generation_jobs WHERE tenant_id = ANY($1)"
        " GROUP BY post_id HAVING count(*) <> 1",
        tenants,
    )
    v.check("one generation job per post", not jobs_per_post, [dict(r) for r in jobs_per_post])
    jobs = await _counts(
        db, "SELECT state, credits FROM creator.generation_jobs WHERE tenant_id = ANY($1)", tenants
    )
    v.check(
        "every job completed, credits committed", jobs == {("completed", "committed"): posts}, jobs
    )
    versions = await _counts(
        db,
        "SELECT count(v.id) FROM creator.generation_jobs j LEFT JOIN creator.content_versions v"
        " ON v.job_id = j.id WHERE j.tenant_id = ANY($1) GROUP BY j.id",
        tenants,
    )
    v.check("one content version per job", versions == {(1,): posts}, versions)


async def credits(db: asyncpg.Connection, tenants: list[UUID], v: Verdicts) -> None:
    off = await db.fetch(
        "SELECT a.tenant_id, a.kind, a.available, a.reserved, coalesce(sum(l.amount), 0) AS ledger"
        " FROM billing.credit_accounts a LEFT JOIN billing.ledger_entries l"
        " ON l.tenant_id = a.tenant_id AND l.kind = a.kind WHERE a.tenant_id = ANY($1)"
        " GROUP BY a.tenant_id, a.kind HAVING a.available <> coalesce(sum(l.amount), 0)"
        " OR a.reserved <> 0",
        tenants,
    )
    accounts = await db.fetchval(
        "SELECT count(*) FROM billing.credit_accounts WHERE tenant_id = ANY($1)", tenants
    )
    v.check(
        f"balance = sum of the ledger, nothing reserved ({accounts} accounts)",
        not off,
        [dict(r) for r in off],
    )
    held = await db.fetchval(
        "SELECT count(*) FROM billing.reservations WHERE tenant_id = ANY($1) AND state = 'held'",
        tenants,
    )
    v.check("no reservation left held", held == 0, held)
    per_job = await _counts(
        db,
        "SELECT (SELECT count(*) FROM billing.reservations r WHERE r.tenant_id = j.tenant_id"
        "   AND r.kind = 'posts' AND r.reference = j.id AND r.state = 'committed'),"
        " (SELECT count(*) FROM billing.ledger_entries l WHERE l.tenant_id = j.tenant_id"
        "   AND l.kind = 'posts' AND l.reference = j.id AND l.entry = 'commit')"
        " FROM creator.generation_jobs j WHERE j.tenant_id = ANY($1)",
        tenants,
    )
    jobs = sum(per_job.values())
    v.check(
        "one committed reservation and one commit per job",
        per_job == {(1, 1): jobs},
        per_job,
    )


async def quiet(stack: Stack, db: asyncpg.Connection, note: Callable[[str], None]) -> None:
    """Wait (bounded) until nothing is left in flight: the outboxes sent, the consumers caught
    up, the credits of every ended job settled with billing, every Stripe event applied.
    Notes what was in flight when the work was done, and how long it took to go quiet."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        started = time.monotonic()
        left = await _in_flight(db, js)
        note(f"in flight when the work was done: {left or 'nothing'}")
        noted = time.monotonic()
        while left and time.monotonic() < started + DRAIN_SECONDS:
            await asyncio.sleep(0.5)
            left = await _in_flight(db, js)
            if left and time.monotonic() - noted >= 5.0:
                note(f"still in flight: {left}")
                noted = time.monotonic()
        note(f"quiet after {time.monotonic() - started:.1f} s; left: {left or 'nothing'}")
    finally:
        await nc.close()


async def _in_flight(db: asyncpg.Connection, js: Any) -> dict[str, object]:
    unsent = {s: n for s, n in (await _unsent(db)).items() if n}
    left: dict[str, object] = {"outbox": unsent, "consumers": await _behind(js)}
    left["credits to settle"] = await db.fetchval(
        "SELECT count(*) FROM creator.generation_jobs WHERE credits LIKE 'pending%'"
    )
    left["stripe events to apply"] = [
        f"{row['type']} {row['outcome']} after {row['attempts']}: {row['last_error']}"
        for row in await db.fetch(
            "SELECT type, outcome, attempts, left(last_error, 160) AS last_error"
            " FROM billing.stripe_events WHERE processed_at IS NULL"
        )
    ]
    return {what: n for what, n in left.items() if n}


async def messages(stack: Stack, db: asyncpg.Connection, v: Verdicts) -> None:
    unsent = await _unsent(db)
    v.check("every outbox empty", not any(unsent.values()), unsent)
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        behind = await _behind(js)
        v.check("every consumer caught up (pending, ack pending)", not behind, behind or "all 0")
        letters = await _dead_letters(js)
        v.check("no dead letters", not letters, letters or 0)
    finally:
        await nc.close()


async def _unsent(db: asyncpg.Connection) -> dict[str, int]:
    return {
        service: await db.fetchval(
            f"SELECT count(*) FROM {service}.outbox WHERE published_at IS NULL"  # noqa: S608
        )
        for service in SERVICES
    }


async def _behind(js: Any) -> dict[str, tuple[int, int]]:
    behind = {}
    for stream in STREAMS:
        for info in await js.consumers_info(stream.name):
            if info.num_pending or info.num_ack_pending:
                behind[f"{stream.name}/{info.name}"] = (info.num_pending, info.num_ack_pending)
    return behind


async def _dead_letters(js: Any) -> list[str]:
    return [
        f"{letter.consumer} ({letter.original_subject}): {letter.reason}"
        for service in SERVICES
        for letter in await list_dead_letters(js, service=service, limit=1000)
    ]


async def _counts(db: asyncpg.Connection, query: str, *args: object) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(row.values()) for row in await db.fetch(query, *args))
