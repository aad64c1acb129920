"""What the benchmarks share: the load generator, its samples, the stack and the context.

The scripts run from the repository root as ``python -m bench.<name>``.

The load generator is one asyncio process of N workers, each with its own ``send`` (the
callers decide whether the workers share one ``httpx.AsyncClient`` or have one each;
HTTP/1.1 keep-alive either way). Each worker sends, awaits the answer and sends again.
Only requests that *start* inside the measured window count; latency is
``time.perf_counter`` around one request.
"""

import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.config import reachable_state_dir
from bai_platform.devstack.stack import ComponentFailed

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
REQUEST_TIMEOUT = 10.0

# Wide enough for the results table when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 100)

Send = Callable[[], Awaitable[httpx.Response]]


class BenchError(RuntimeError):
    """The benchmark could not set up or run."""


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @classmethod
    def after(cls, warmup: float, duration: float) -> "Window":
        start = time.perf_counter() + warmup
        return cls(start=start, end=start + duration)


@dataclass
class Sample:
    """The measured window of one run of one target (or scenario)."""

    name: str
    seconds: float
    cpu_seconds: float = 0.0  # this process (the load generator) in the window
    server_cpu_seconds: float | None = None  # the server process, when its pid is known
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: str, seconds: float) -> None:
        if outcome == "200":
            self.latencies.append(seconds)
        else:
            self.errors[outcome] += 1


@dataclass(frozen=True)
class Summary:
    name: str
    requests: int
    errors: int
    rps: float
    p50: float
    p90: float
    p99: float
    generator_cpu: float  # percent of one core
    server_cpu: float | None  # percent of one core


# ---- http ----------------------------------------------------------------------------
def client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT, trust_env=False, **kwargs)


def pool_limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


def expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def loopback_only(urls: Iterable[str]) -> None:
    for url in urls:
        if urlsplit(url).hostname not in LOOPBACK_HOSTS:
            raise BenchError(f"{url}: this benchmark only sends traffic to 127.0.0.1")


# ---- the load ------------------------------------------------------------------------
async def attempt(send: Send) -> str:
    """The answer's status code, or the transport error's name."""
    try:
        response = await send()
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return str(response.status_code)


async def _worker(send: Send, window: Window, sample: Sample) -> None:
    while (started := time.perf_counter()) < window.end:
        outcome = await attempt(send)
        if started >= window.start:
            sample.record(outcome, time.perf_counter() - started)


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) another process has used so far; None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _cpu_in(window: Window, server_pid: int | None) -> tuple[float, float | None]:
    """CPU seconds of this process, and of the server process, inside the window."""
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    before = time.process_time()
    server_before = process_cpu_seconds(server_pid) if server_pid else None
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    own = time.process_time() - before
    server_after = process_cpu_seconds(server_pid) if server_pid else None
    if server_before is None or server_after is None:
        return own, None
    return own, server_after - server_before


async def drive(
    sends: Sequence[Send],
    name: str,
    *,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
) -> Sample:
    """One worker per ``send``, through a warm-up and then a measured window."""
    sample = Sample(name=name, seconds=duration)
    window = Window.after(warmup, duration)
    async with asyncio.timeout(warmup + duration + REQUEST_TIMEOUT + 5.0):
        cpu = asyncio.create_task(_cpu_in(window, server_pid))
        await asyncio.gather(*(_worker(send, window, sample) for send in sends))
        sample.cpu_seconds, sample.server_cpu_seconds = await cpu
    return sample


# ---- results -------------------------------------------------------------------------
def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    """p50, p90, p99 in milliseconds (NaN with fewer than two answers)."""
    if len(latencies) < 2:
        return (float("nan"),) * 3
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[89] * 1000, cuts[98] * 1000


def summarise(name: str, samples: list[Sample]) -> Summary:
    latencies = [value for sample in samples for value in sample.latencies]
    errors = sum(sum(sample.errors.values()) for sample in samples)
    seconds = sum(sample.seconds for sample in samples)
    cpu = sum(sample.cpu_seconds for sample in samples)
    server = [sample.server_cpu_seconds for sample in samples]
    p50, p90, p99 = percentiles(latencies)
    return Summary(
        name=name,
        requests=len(latencies) + errors,
        errors=errors,
        rps=len(latencies) / seconds,
        p50=p50,
        p90=p90,
        p99=p99,
        generator_cpu=100 * cpu / seconds,
        server_cpu=None if None in server else 100 * sum(s or 0.0 for s in server) / seconds,
    )


def error_counts(samples: Iterable[Sample]) -> Counter[str]:
    return sum((sample.errors for sample in samples), Counter())


def listed(errors: Counter[str]) -> str:
    """``401 x3, ReadTimeout x1``."""
    return ", ".join(f"{name} x{count}" for name, count in errors.most_common())


# ---- the stack -----------------------------------------------------------------------
def report_component(component: str, status: str, detail: str) -> None:
    console.print(f"  [dim]{status:>9}  {component}[/]")


def _start(stack: Stack, only: Iterable[str] | None) -> None:
    """Start the stack; a failure carries its log tail (the folder goes away with it)."""
    try:
        stack.start(only=only)
    except ComponentFailed as exc:
        raise BenchError(f"{exc}; log {exc.log_path}:\n{exc.log_tail()}") from exc


@contextlib.contextmanager
def own_stack(
    env: Mapping[str, str], only: Iterable[str] | None = None, **stack_settings: Any
) -> Iterator[Stack]:
    """A stack in a temporary folder on free ports, stopped (and removed) on the way out.

    ``stack_settings`` are further ``StackSettings`` fields (e.g. ``edge_trusted_ips``)."""
    with reachable_state_dir() as state:
        settings = StackSettings(
            state_dir=state, free_ports=True, service_env=dict(env), **stack_settings
        )
        stack = Stack(settings, reporter=report_component)
        try:
            console.print(f"Starting a stack in {state} …")
            _start(stack, only)
            yield stack
        finally:
            console.print("Stopping the stack …")
            stack.stop()


# ---- context and entry ---------------------------------------------------------------
def loads(load: tuple[float, ...]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def machine_rows(load_before: tuple[float, ...]) -> dict[str, str]:
    """The first rows of every context table: CPUs, load, Python, platform, httpx."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu count": f"{os.cpu_count()} (usable: {usable})",
        "load average (before; after)": f"{loads(load_before)}; {loads(os.getloadavg())}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "httpx": httpx.__version__,
    }


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so the stack is stopped."""
    raise KeyboardInterrupt
