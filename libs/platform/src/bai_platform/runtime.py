"""``python -m <service> api|worker|migrate|dead-letters|replay``: one entry point per service."""

import asyncio
import socket
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
import uvicorn
import uvloop
from fastapi import FastAPI
from nats.errors import TimeoutError as NatsTimeoutError
from rich.console import Console
from rich.table import Table

from bai_platform import deadletter
from bai_platform.messaging import connect
from bai_platform.migrations import upgrade
from bai_platform.settings import ServiceSettings
from bai_platform.telemetry import configure_logging, configure_tracing
from bai_platform.worker import WorkerSpec, run_worker


def service_cli(
    *,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    worker_factory: Callable[[ServiceSettings], WorkerSpec],
    migrations: Path,
    commands: Sequence[Callable[..., None]] = (),
) -> typer.Typer:
    """The command line of one service; ``commands`` adds the service's own (typer style)."""
    cli = typer.Typer(add_completion=False, no_args_is_help=True)
    for command in commands:
        cli.command()(command)

    @cli.command()
    def api() -> None:
        """Serve the HTTP API (uvicorn)."""
        settings = _boot(settings_factory, "api")
        app = app_factory(settings)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            loop="uvloop",
            http="httptools",
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips(settings),
            server_header=False,
        )
        DrainingServer(config, app, drain_delay=settings.drain_delay_seconds).run()

    @cli.command()
    def worker() -> None:
        """Run the outbox relay, consumers and periodic tasks."""
        settings = _boot(settings_factory, "worker")
        # The api's loop too (uvicorn, loop="uvloop"): a worker's time goes to round trips
        # (quota answers, consumers, relays), and asyncio's own socket writes were a
        # quarter of billing's quota worker under load (bench/README.md).
        uvloop.run(run_worker(settings, worker_factory(settings)))

    @cli.command()
    def migrate(revision: str = "head") -> None:
        """Apply the service's database migrations."""
        settings = _boot(settings_factory, "migrate")
        upgrade(settings, migrations, revision)

    @cli.command("dead-letters")
    def dead_letters(limit: int = 50) -> None:
        """List messages this service's consumers gave up on (as the NATS admin user)."""
        settings = _boot(settings_factory, "cli")
        letters = _as_operator(settings, _list(settings, limit))
        table = Table("seq", "consumer", "subject", "reason")
        for letter in letters:
            table.add_row(
                str(letter.sequence), letter.consumer, letter.original_subject, letter.reason
            )
        Console().print(table)

    @cli.command()
    def replay(sequence: int) -> None:
        """Publish a dead letter again on its original subject (as the NATS admin user)."""
        settings = _boot(settings_factory, "cli")
        letter = _as_operator(settings, _replay(settings, sequence))
        Console().print(f"replayed {letter.sequence} to {letter.original_subject}")

    return cli


class DrainingServer(uvicorn.Server):
    """Uvicorn that drains before it stops listening and waits for open requests.

    With a ``drain_delay``, it first answers ``/readyz`` 503 while it goes on serving for
    that long (a balancer takes it out of rotation meanwhile). Then long-lived responses
    (live events) end at once with a retry hint, instead of holding the shutdown until
    the graceful timeout cuts them.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, *, drain_delay: float = 0) -> None:
        super().__init__(config)
        self._app, self._drain_delay = app, drain_delay

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._drain_delay:
            self._app.state.draining = True
            await asyncio.sleep(self._drain_delay)
        for hook in getattr(self._app.state, "on_draining", []):
            hook()
        await super().shutdown(sockets)


def forwarded_allow_ips(settings: ServiceSettings) -> list[str]:
    """The proxies whose X-Forwarded-For uvicorn believes: ``trusted_proxies``, the same
    list the gateway's per-IP limits resolve clients with."""
    return [str(network) for network in settings.trusted_proxies]


def _boot(settings_factory: Callable[[], ServiceSettings], process: str) -> ServiceSettings:
    settings = settings_factory()
    configure_logging(settings)
    configure_tracing(settings, process=process)
    return settings


_T = TypeVar("_T")

# Dead letters of every service share one stream, and a replay publishes another service's
# fact again: both are beyond a service's own NATS user (bai_platform.nats_permissions), so
# they are an operator's commands. The server ignores what a user may not ask, and the
# request times out.
OPERATOR_ONLY = (
    "NATS did not answer the user {user!r}: dead letters are read and replayed as the NATS "
    "admin user (BAI_NATS_USER=admin and its BAI_NATS_PASSWORD; with make run, "
    "`bai-stack dead-letters` and `bai-stack replay` do it)"
)


def _as_operator(settings: ServiceSettings, work: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(work)
    except NatsTimeoutError:
        Console(stderr=True).print(OPERATOR_ONLY.format(user=settings.nats_auth.user))
        raise typer.Exit(2) from None


async def _list(settings: ServiceSettings, limit: int) -> list[deadletter.DeadLetter]:
    nc = await connect(
        settings.nats_url, name=f"{settings.service_name}-cli", auth=settings.nats_auth
    )
    try:
        return await deadletter.list_dead_letters(
            nc.jetstream(), service=settings.service_name, limit=limit
        )
    finally:
        await nc.close()


async def _replay(settings: ServiceSettings, sequence: int) -> deadletter.DeadLetter:
    nc = await connect(
        settings.nats_url, name=f"{settings.service_name}-cli", auth=settings.nats_auth
    )
    try:
        return await deadletter.replay(nc.jetstream(), sequence=sequence)
    finally:
        await nc.close()
