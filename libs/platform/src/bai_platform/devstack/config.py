"""Where the local stack keeps its state and which ports it binds, all settings.

Every port has a ``BAI_*_PORT`` setting so a port already taken can be moved; with
``free_ports`` (the test session) each one is picked from the free ports instead.
``DATABASE_URL`` / ``NATS_URL`` in the environment replace the embedded servers.
"""

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES: tuple[str, ...] = ("gateway", "planner", "creator", "mining", "billing")
ROLES: tuple[str, ...] = ("api", "worker")
REPLICA_PORT_STRIDE = 20


def component(service: str, role: str, replica: int = 0) -> str:
    """A service process's name: ``planner-api``, then ``planner-api-2`` and on."""
    name = f"{service}-{role}"
    return name if replica == 0 else f"{name}-{replica + 1}"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free right now and never handed out before by this process.

    A port is picked well before its server binds it (NATS is planned before it starts);
    the kernel may offer the same free port twice meanwhile, so remembering what was
    handed out keeps two components from ever being planned on one port.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@contextmanager
def reachable_state_dir() -> Iterator[Path]:
    """A fresh state folder the unprivileged PostgreSQL user can reach, removed afterwards.

    pytest's own temporary folders are private (mode 700): a server data folder there would
    have to move out of the tree (see ``devstack.postgres``) and would outlive the test.
    """
    path = Path(tempfile.mkdtemp(prefix="bai-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def repo_root() -> Path:
    """The checkout this module runs from (libs/platform/src/bai_platform/devstack)."""
    return Path(__file__).resolve().parents[5]


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAI_", extra="ignore")

    state_dir: Path = Field(default_factory=lambda: repo_root() / ".state")
    host: str = "127.0.0.1"
    edge_port: int = 8080
    postgres_port: int = 55432
    nats_port: int = 4222
    service_base_port: int = 8101
    worker_base_port: int = 8111
    # Processes per service and role: more than one runs each service's api and worker
    # that many times (ports base + 20 per further replica), balanced by Traefik, with
    # the gateway's rate-limit counters in Valkey so that limits stay exact across them.
    replicas: int = Field(default=1, ge=1, le=4)
    # Only with replicas: Traefik's loopback entry point for ForwardAuth, and Valkey.
    edge_internal_port: int = 8081
    valkey_port: int = 56379
    free_ports: bool = False
    startup_timeout_seconds: float = 90.0
    stop_timeout_seconds: float = 15.0
    # Restart a process that exits on its own, with backoff (devstack.watchdog).
    heal: bool = True
    database: str = "bai"
    # Extra environment for every service process (e.g. test-sized rate limits).
    service_env: dict[str, str] = Field(default_factory=dict)
    # The Stripe webhook signing secret of the local stack (billing verifies with it), for
    # `stripe listen --forward-to` or hand-signed test events. Local development only.
    stripe_webhook_secret: str = "whsec_bai_local_development_only_0000"
    # Proxies in front of the edge whose X-Forwarded-For Traefik keeps (a load balancer);
    # none by default, so a client cannot choose the address that per-IP limits count.
    edge_trusted_ips: list[str] = Field(default_factory=list)

    # How each service's api, worker and migrate run: as processes of this checkout, or as
    # podman containers of the images `bai-stack images` built (localhost/bai-<s>:<tag>).
    service_runtime: Literal["process", "podman"] = "process"
    image_tag: str = "dev"

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "BAI_DATABASE_URL")
    )
    nats_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NATS_URL", "BAI_NATS_URL")
    )

    def assign_free_ports(self) -> "StackSettings":
        """A copy whose every port is a free one (for tests and parallel stacks)."""
        if not self.free_ports:
            return self
        return self.model_copy(
            update={
                "edge_port": free_port(),
                "postgres_port": free_port(),
                "nats_port": free_port(),
                "edge_internal_port": free_port(),
                "valkey_port": free_port(),
                "free_ports": False,
            }
        )

    @property
    def edge_url(self) -> str:
        return f"http://{self.host}:{self.edge_port}"
