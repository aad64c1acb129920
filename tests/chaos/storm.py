"""A storm: many prepared requests fired at the edge at a steady rate, a bounded number in
flight, every answer kept with the shot that caused it, and a summary table to print.

Shots are prepared (and signed) before the storm starts, so the storm measures the edge and
not the test's own signing. Two answers mean "not now" rather than a verdict, and a shot
that gets one is fired again after the pause it names, as Stripe and n8n retry: the edge's
flood shield's 429 past its rate per client (the storms stay below it, so that happens
only when something else from 127.0.0.1 shares the bucket) and a 503 with Retry-After (a
service that cannot answer in time, say on a machine busy with other test runs). Both are
counted in the table; only the answer after them is checked.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

PROBLEM_JSON = "application/problem+json"
RETRIES = 20
NOT_NOW = (429, 503)
# Generous: on a 2-core machine shared with other test runs an answer can take seconds.
SHOT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Shot:
    """One request of the storm and what the test expects of it (``expect``: a status)."""

    kind: str
    path: str
    body: bytes
    headers: dict[str, str]
    expect: int
    key: str = ""  # what the shot is about: an event id, a job id


@dataclass(frozen=True)
class Hit:
    shot: Shot
    status: int
    content_type: str
    json: object

    @property
    def reason(self) -> str:
        """How the edge answered: the status and, for a problem, its code."""
        if isinstance(self.json, dict) and "code" in self.json:
            return f"{self.status} {self.json['code']}"
        return str(self.status)


@dataclass
class Report:
    name: str
    hits: list[Hit] = field(default_factory=list)
    seconds: float = 0.0
    retried: Counter[int] = field(default_factory=Counter)  # status -> shots fired again

    @property
    def rate(self) -> float:
        return len(self.hits) / self.seconds if self.seconds else 0.0

    def unexpected(self) -> list[Hit]:
        return [hit for hit in self.hits if hit.status != hit.shot.expect]

    def table(self) -> str:
        """The summary: shots per kind and how they were answered, then the totals."""
        by_kind = Counter((hit.shot.kind, hit.reason) for hit in self.hits)
        accepted = sum(1 for hit in self.hits if 200 <= hit.status < 300)
        lines = [
            f"== {self.name} ==",
            f"{'shot':<28} {'answer':<34} {'count':>6}",
            *(f"{kind:<28} {reason:<34} {n:>6}" for (kind, reason), n in sorted(by_kind.items())),
            f"sent {len(self.hits)}, accepted {accepted}, refused {len(self.hits) - accepted}; "
            f"fired again after 429: {self.retried[429]}, after 503: {self.retried[503]}",
            f"duration {self.seconds:.1f} s, rate {self.rate:.0f} requests/s",
        ]
        return "\n".join(lines)


async def storm(
    client: httpx.AsyncClient,
    shots: Sequence[Shot],
    *,
    name: str,
    rate: float,
    in_flight: int,
) -> Report:
    """Fire ``shots`` in order, starting one every ``1/rate`` s, at most ``in_flight`` at
    once (a shot waits for a free slot, so a slow edge lowers the rate, never the count)."""
    report = Report(name)
    slots = asyncio.Semaphore(in_flight)
    start = time.monotonic()

    async def fire(n: int, shot: Shot) -> None:
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))  # the pace
        async with slots:
            report.hits.append(await send(client, shot, report))

    await asyncio.gather(*(fire(n, shot) for n, shot in enumerate(shots)))
    report.seconds = time.monotonic() - start
    return report


async def send(client: httpx.AsyncClient, shot: Shot, report: Report) -> Hit:
    """Fire one shot, and again after the pause named while the answer is "not now"."""
    for _ in range(RETRIES):
        response = await client.post(
            shot.path, content=shot.body, headers=shot.headers, timeout=SHOT_TIMEOUT
        )
        pause = response.headers.get("retry-after")
        if response.status_code not in NOT_NOW or (response.status_code == 503 and not pause):
            break
        report.retried[response.status_code] += 1
        await asyncio.sleep(float(pause or 0.5))
    content_type = response.headers.get("content-type", "")
    body: object = response.json() if "json" in content_type else response.text
    return Hit(shot, response.status_code, content_type, body)
