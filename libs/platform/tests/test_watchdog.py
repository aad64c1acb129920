"""The supervisor brings back what exits on its own, with backoff, and its stop leaves nothing.

Real child processes throughout; time is passed to ``Watchdog.check`` explicitly where the
backoff is the point, so no test waits for a real 30 s delay.
"""

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.process import ManagedProcess, pid_alive
from bai_platform.devstack.watchdog import Backoff, Watchdog

CRASHES = "import sys; sys.exit(3)"
SLEEPS = "import time; time.sleep(60)"


class Reports(list[tuple[str, str, str]]):
    def __call__(self, component: str, status: str, detail: str) -> None:
        self.append((component, status, detail))


def _process(tmp_path: Path, name: str, code: str) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        argv=[sys.executable, "-c", code],
        log_path=tmp_path / f"{name}.log",
        pid_path=tmp_path / f"{name}.pid",
    )


@pytest.fixture
def table() -> Iterator[dict[str, ManagedProcess]]:
    processes: dict[str, ManagedProcess] = {}
    yield processes
    for process in processes.values():
        process.stop(5)


def _exited(process: ManagedProcess) -> None:
    assert process.popen is not None
    process.popen.wait(10)


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(initial=0.5, ceiling=30)
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_crashing_process_is_restarted_later_each_time_and_reported(
    tmp_path: Path, table: dict[str, ManagedProcess]
) -> None:
    reports = Reports()
    watchdog = Watchdog(table, threading.RLock(), reports, Backoff(initial=1, ceiling=4))
    crasher = table["crasher"] = _process(tmp_path, "crasher", CRASHES)
    crasher.start()
    _exited(crasher)
    now, restarted_at = 0.0, list[float]()
    watchdog.check(now)
    while len(restarted_at) < 4:
        now += 0.25
        if watchdog.check(now):
            restarted_at.append(now)
            _exited(crasher)
    gaps = [b - a for a, b in itertools.pairwise(restarted_at)]
    # 2 s, 4 s, then the ceiling, each after the 0.25 s tick that noticed the exit.
    assert restarted_at[0] == 1.0
    assert gaps == [2.25, 4.25, 4.25]
    assert watchdog.restarts("crasher") == 4
    assert reports[0] == ("crasher", "restarted", "exit code 3; restart 1, after 1 s")
    assert reports[-1][2] == "exit code 3; restart 4, after 4 s"


def test_a_process_that_ran_long_enough_starts_over_from_the_first_delay(
    tmp_path: Path, table: dict[str, ManagedProcess]
) -> None:
    backoff = Backoff(initial=1, ceiling=60, stable_after=10)
    watchdog = Watchdog(table, threading.RLock(), Reports(), backoff)
    crasher = table["crasher"] = _process(tmp_path, "crasher", CRASHES)
    crasher.start()
    _exited(crasher)
    watchdog.check(0)
    for now in (0.5, 1.5, 2, 4):  # exits at once twice: restarted after 1 s, then 2 s
        _exited(crasher)
        watchdog.check(now)
    assert watchdog.restarts("crasher") == 2
    _exited(crasher)
    assert watchdog.check(100) == []  # ran 96 s before it exited: due after 1 s again
    assert watchdog.check(101) == ["crasher"]


def test_a_process_killed_with_sigkill_comes_back_and_says_so(
    tmp_path: Path, table: dict[str, ManagedProcess]
) -> None:
    reports = Reports()
    watchdog = Watchdog(table, threading.RLock(), reports, Backoff(initial=0.05), interval=0.02)
    sleeper = table["worker"] = _process(tmp_path, "worker", SLEEPS)
    sleeper.start()
    first = sleeper.pid
    assert first is not None
    watchdog.start()
    try:
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while watchdog.restarts("worker") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watchdog.close()
    assert sleeper.alive()
    assert sleeper.pid != first
    assert reports == [("worker", "restarted", "killed by signal 9; restart 1, after 0.05 s")]


def test_what_is_stopped_on_purpose_stays_stopped(
    tmp_path: Path, table: dict[str, ManagedProcess]
) -> None:
    watchdog = Watchdog(table, threading.RLock(), Reports(), Backoff(initial=0))
    stopped = table["stopped"] = _process(tmp_path, "stopped", SLEEPS)
    removed = table["removed"] = _process(tmp_path, "removed", CRASHES)
    stopped.start()
    removed.start()
    watchdog.check(0)
    stopped.stop(5)  # signalled by the stack's stop
    del table["removed"]  # stop_component takes it out of the table
    _exited(removed)
    assert watchdog.check(10) == []
    assert not stopped.alive()
    assert not removed.alive()


SPAWNS_AND_IGNORES_TERM = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_stop_kills_a_process_that_ignores_sigterm_and_every_child_it_started(
    tmp_path: Path,
) -> None:
    hung = _process(tmp_path, "hung", SPAWNS_AND_IGNORES_TERM)
    hung.start()
    deadline = time.monotonic() + 10
    while not hung.log_path.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(hung.log_path.read_text().split()[0])
    leader = hung.pid
    assert leader is not None
    started = time.monotonic()
    hung.stop(timeout=0.5)
    took = time.monotonic() - started
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)  # the grandchild is reaped by init, a moment later
    assert not pid_alive(leader)
    assert not pid_alive(child)
    assert took < 5


IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def test_a_stacks_stop_gives_each_tier_one_timeout_however_many_processes_hang(
    tmp_path: Path,
) -> None:
    """Six service processes that ignore SIGTERM are killed at the tier's one deadline, not
    one timeout after another (six in a row were what outlasted a loaded CI's patience)."""
    timeout = 1.0
    stack = Stack(StackSettings(state_dir=tmp_path, free_ports=True, stop_timeout_seconds=timeout))
    hung = [_process(tmp_path, f"svc{n}-worker", IGNORES_TERM) for n in range(6)]
    for process in hung:
        process.start()
        stack.processes[process.name] = process
    time.sleep(0.5)  # each has set its handler
    started = time.monotonic()
    stack.stop()
    took = time.monotonic() - started
    assert all(not p.alive() for p in hung)
    assert took < 3 * timeout, f"the stop took {took:.1f} s"
