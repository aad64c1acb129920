"""Bring back the stack's processes that exit on their own, with backoff, as Kubernetes would.

Invariants:
- only processes the stack still owns are watched: one stopped on purpose (``stop``,
  ``stop_component``) has left the table or was signalled, so it is never brought back;
- the n-th restart in a row waits ``min(initial * 2**(n-1), ceiling)`` seconds (Kubernetes'
  CrashLoopBackOff); a process that ran ``stable_after`` seconds starts over from ``initial``;
- every restart is reported (exit code, how many so far, after what delay) and counted;
- the table is read and changed only under the stack's lock, so a stop never races a restart.
"""

import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from bai_platform.devstack.process import ManagedProcess

Reporter = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    ceiling: float = 30.0
    stable_after: float = 60.0

    def delay(self, failures_in_a_row: int) -> float:
        return min(self.initial * 2.0 ** max(failures_in_a_row - 1, 0), self.ceiling)


@dataclass
class _Record:
    started_at: float
    restarts: int = 0
    in_a_row: int = 0
    due: float | None = None
    exit_code: int | None = None


@dataclass
class Watchdog:
    """Checks the table every ``interval`` seconds on a thread of its own (``start``)."""

    processes: MutableMapping[str, ManagedProcess]
    lock: threading.RLock
    report: Reporter
    backoff: Backoff = field(default_factory=Backoff)
    interval: float = 0.25
    _records: dict[str, _Record] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def restarts(self, name: str) -> int:
        record = self._records.get(name)
        return record.restarts if record else 0

    def check(self, now: float | None = None) -> list[str]:
        """One pass: note what exited, restart what is due; the names restarted."""
        now = time.monotonic() if now is None else now
        restarted = []
        with self.lock:
            for name, process in list(self.processes.items()):
                if self._tend(name, process, now):
                    restarted.append(name)
            for gone in self._records.keys() - self.processes.keys():
                del self._records[gone]
        return restarted

    def _tend(self, name: str, process: ManagedProcess, now: float) -> bool:
        record = self._records.setdefault(name, _Record(started_at=now))
        if process.alive() or process.signalled or process.popen is None:
            return False
        if record.due is None:
            ran = now - record.started_at
            record.in_a_row = 1 if ran >= self.backoff.stable_after else record.in_a_row + 1
            record.due = now + self.backoff.delay(record.in_a_row)
            record.exit_code = process.popen.returncode
        if now < record.due:
            return False
        delay = self.backoff.delay(record.in_a_row)
        process.start()
        record.restarts, record.started_at, record.due = record.restarts + 1, now, None
        detail = f"{_ended(record.exit_code)}; restart {record.restarts}, after {delay:g} s"
        self.report(name, "restarted", detail)
        return True

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="bai-watchdog", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()


def _ended(code: int | None) -> str:
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
