"""The chaos suite's faults, its patient clients and its fault log.

A fault is done to the running stack and returns once the stack says it recovered: every
service process answers /readyz again. The clients are patient as Stripe and n8n are: a
delivery is sent again, after the pause it was told or a short one, until it gets the answer
it wants (any other answer or a broken connection is noted in the log, never fatal).
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bai_platform.devstack import Stack

RECOVERY_SECONDS = 90.0  # a fault's bound: the stack is ready again within this
DOWN_SECONDS = 3.0  # how long NATS and PostgreSQL stay down
PATIENCE_SECONDS = 180.0  # a patient client's bound for one delivery
PAUSE_SECONDS = 0.5  # between tries when the answer names no pause


@dataclass
class FaultLog:
    """What was done when, and how the edge answered each kind of client in each phase."""

    started: float = field(default_factory=time.monotonic)
    phase: str = "work starts"
    lines: list[str] = field(default_factory=list)
    answers: dict[str, Counter[str]] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.lines.append(f"{time.monotonic() - self.started:7.1f} s  {what}")

    def answered(self, who: str, answer: httpx.Response | Exception) -> None:
        """Count one answer in the current phase: its status, or the error's type."""
        if isinstance(answer, httpx.Response):
            code = answer.headers.get("content-type", "").startswith("application/problem")
            reason = str(answer.status_code)
            if code and answer.status_code >= 400:
                reason += f" {answer.json().get('code', '')}"
        else:
            reason = type(answer).__name__
        self.answers.setdefault(self.phase, Counter())[f"{who}: {reason}"] += 1

    def count(self, status: str) -> int:
        """How many answers of any client in any phase had this status."""
        return sum(
            n
            for counts in self.answers.values()
            for answer, n in counts.items()
            if answer.split(": ", 1)[1].split(" ")[0] == status
        )

    def table(self) -> str:
        lines = ["== fault log ==", *self.lines, "", "== how the edge answered, by phase =="]
        for phase, counts in self.answers.items():
            lines.append(f"{phase}:")
            lines += [f"  {answer:<48} {n:>6}" for answer, n in sorted(counts.items())]
        return "\n".join(lines)


async def deliver(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    sign: Callable[[], tuple[bytes, dict[str, str]]],
    want: int,
    who: str,
    log: FaultLog,
) -> httpx.Response:
    """Send until the answer is ``want`` (``sign`` makes the body and headers of each try,
    so a signature is always fresh); a 4xx other than 408/409/425/429 is a verdict and
    ends it too, for the caller to check."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        body, headers = sign()
        answer: httpx.Response | Exception
        try:
            answer = await client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            answer = exc
        log.answered(who, answer)
        if isinstance(answer, httpx.Response) and (
            answer.status_code == want or _verdict(answer.status_code)
        ):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{who} {method} {path}: no {want} in {PATIENCE_SECONDS} s")
        pause = answer.headers.get("retry-after") if isinstance(answer, httpx.Response) else None
        await asyncio.sleep(min(float(pause or PAUSE_SECONDS), 5.0))


def _verdict(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 409, 425, 429)


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Stack, FaultLog], Awaitable[None]]


def kill(process: str) -> Fault:
    async def inject(stack: Stack, log: FaultLog) -> None:
        before = stack.watchdog.restarts(process)
        pid = stack.crash(process)
        log.note(f"kill -9 {process} (pid {pid})")
        async with asyncio.timeout(RECOVERY_SECONDS):
            while stack.watchdog.restarts(process) == before:
                await asyncio.sleep(0.1)
        log.note(f"the supervisor started {process} again (pid {stack.processes[process].pid})")

    return Fault(f"kill -9 {process}", inject)


def restart(component: str) -> Fault:
    """Stop NATS or PostgreSQL (their own graceful stop), keep it down, start it again on
    the same store."""

    async def inject(stack: Stack, log: FaultLog) -> None:
        await asyncio.to_thread(stack.stop_component, component)
        log.note(f"{component} stopped")
        await asyncio.sleep(DOWN_SECONDS)
        start = stack.restart_nats if component == "nats" else stack.restart_postgres
        await asyncio.to_thread(start)
        log.note(f"{component} started again after {DOWN_SECONDS:.0f} s down (same store)")

    return Fault(f"restart {component}", inject)


async def recovered(stack: Stack, log: FaultLog) -> None:
    """Wait until every service process answers /readyz (bounded)."""
    started = time.monotonic()
    async with asyncio.timeout(RECOVERY_SECONDS):
        while await asyncio.to_thread(stack.unready):
            await asyncio.sleep(0.25)
    restarts = {n: stack.watchdog.restarts(n) for n in stack.processes}
    log.note(
        f"every process ready again in {time.monotonic() - started:.1f} s; "
        f"restarts so far: {({n: r for n, r in restarts.items() if r}) or 'none'}"
    )
