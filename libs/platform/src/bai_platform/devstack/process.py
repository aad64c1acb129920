"""One child process with its log file and pid file, stopped politely then firmly."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16_384))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" in status


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def terminate_pid(pid: int, *, sig: signal.Signals, timeout: float) -> None:
    """Send ``sig``, wait up to ``timeout``, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class ManagedProcess:
    """A child started in its own session so a terminal Ctrl-C reaches only the supervisor."""

    name: str
    argv: Sequence[str]
    log_path: Path
    pid_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    popen: subprocess.Popen[bytes] | None = None
    signalled: bool = False

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.signalled = False
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{self.popen.pid}\n{' '.join(self.argv)}\n")

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_stop(self) -> None:
        """Ask the process to stop without waiting (``stop`` then waits).

        Once only: a second signal means "now" to some servers (uvicorn, PostgreSQL).
        """
        if self.popen is not None and self.popen.poll() is None and not self.signalled:
            self.popen.send_signal(self.stop_signal)
            self.signalled = True

    def stop(self, timeout: float) -> None:
        """Signal, wait up to ``timeout``, then SIGKILL; then SIGKILL whatever is left of its
        process group (children it started), so nothing outlives a stop."""
        if self.popen is not None and self.popen.poll() is None:
            self.signal_stop()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen is not None:
            # Its own session made it the leader of a group whose id is its pid.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)


def recover_stale(pid_path: Path, *, marker: str | None = None, timeout: float) -> bool:
    """End a process left by a crashed run if its pid file still names it; True if one was.

    The process must still run the recorded command (or contain ``marker``), so a pid
    reused by an unrelated process is never signalled.
    """
    if not pid_path.exists():
        return False
    pid_text, _, command = pid_path.read_text().partition("\n")
    pid_path.unlink(missing_ok=True)
    if not pid_text.strip().isdigit():
        return False
    pid, running = int(pid_text), cmdline(int(pid_text)).strip()
    expected = marker if marker is not None else command.strip()
    found = bool(expected) and pid_alive(pid) and expected in running
    if found:
        terminate_pid(pid, sig=signal.SIGTERM, timeout=timeout)
    return found
