"""The worker process: outbox relay, consumers and any periodic tasks of one service.

It serves ``/healthz``, ``/readyz`` and ``/metrics`` on its own port for probes. On
SIGTERM it stops fetching, lets in-flight messages finish, then drains NATS and closes
the database pool.
"""

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
import uvicorn
from fastapi import FastAPI, Response
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Table

from bai_contracts import DEAD_LETTER_STREAM, STREAMS, StreamSpec
from bai_platform.consumer import ConsumerRunner, Subscription
from bai_platform.db import Database
from bai_platform.health import health_router
from bai_platform.messaging import connect, ensure_consumed_streams, ensure_streams
from bai_platform.outbox import OutboxRelay
from bai_platform.settings import ServiceSettings

SettingsT_co = TypeVar("SettingsT_co", bound=ServiceSettings, covariant=True)
log = structlog.get_logger("bai.worker")


@dataclass(frozen=True)
class WorkerContext(Generic[SettingsT_co]):
    """What a service's worker tasks run with; ``stop`` is set when the worker stops.

    A task states the settings it reads (``WorkerContext[CreatorSettings]``); the worker
    runs with the settings its service's ``worker_spec`` was given.
    """

    settings: SettingsT_co
    db: Database
    nc: NatsClient
    js: JetStreamContext
    stop: asyncio.Event = field(default_factory=asyncio.Event)


# A worker task: an async function of the context that returns once ``ctx.stop`` is set
# (``partial`` gives it anything more it needs).
WorkerTask = Callable[[WorkerContext[Any]], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class WorkerSpec:
    """A service's worker: its outbox, its subscriptions and its extra tasks."""

    outbox: Table
    inbox: Table
    subscriptions: Sequence[Subscription] = ()
    tasks: Sequence[WorkerTask] = ()


async def every(
    stop: asyncio.Event, seconds: float, body: Callable[[], Awaitable[object]], *, name: str
) -> None:
    """Run ``body`` every ``seconds`` until ``stop`` is set.

    A failing pass is logged and the next one comes on time: one bad row or a database
    blip must not take the worker (and every other task in it) down.
    """
    while not stop.is_set():
        try:
            await body()
        except Exception:
            log.exception("periodic_task_failed", task=name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


class _ProbeServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the worker owns the signals
        yield


def _probe_app(checks: dict[str, Callable[[], Awaitable[None]]]) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.readiness_checks = checks
    app.include_router(health_router())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def run_worker(settings: ServiceSettings, spec: WorkerSpec) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order."""
    db = Database(settings)
    nc = await connect(
        settings.nats_url, name=f"{settings.service_name}-worker", auth=settings.nats_auth
    )
    js = nc.jetstream()
    ctx: WorkerContext[ServiceSettings] = WorkerContext(settings=settings, db=db, nc=nc, js=js)
    _install_signal_handlers(ctx.stop)
    try:
        await _serve(ctx, spec)
    finally:
        await nc.drain()
        await db.dispose()
        log.info("worker_stopped")


async def _serve(ctx: WorkerContext[ServiceSettings], spec: WorkerSpec) -> None:
    own = [s for s in STREAMS if s.service == ctx.settings.service_name]
    replicas = ctx.settings.stream_replicas
    await ensure_streams(ctx.js, [*own, DEAD_LETTER_STREAM], replicas=replicas)
    foreign = [s for s in _streams_of(spec) if s not in own]
    await ensure_consumed_streams(ctx.js, foreign, replicas=replicas)
    runners = [
        ConsumerRunner(
            db=ctx.db,
            js=ctx.js,
            inbox=spec.inbox,
            subscription=sub,
            service=ctx.settings.service_name,
        )
        for sub in spec.subscriptions
    ]
    relay = OutboxRelay(db=ctx.db, nc=ctx.nc, js=ctx.js, table=spec.outbox)
    tasks = [relay.run(ctx.stop), *(r.run(ctx.stop) for r in runners)]
    tasks += [task(ctx) for task in spec.tasks]
    probe = _ProbeServer(
        uvicorn.Config(
            _probe_app(_checks(ctx, runners)),
            host=ctx.settings.host,
            port=ctx.settings.port,
            log_config=None,
            access_log=False,
        )
    )
    async with asyncio.TaskGroup() as group:
        for task in tasks:
            group.create_task(task)
        group.create_task(probe.serve())
        log.info("worker_started", tasks=len(tasks))
        await ctx.stop.wait()
        probe.should_exit = True


def _streams_of(spec: WorkerSpec) -> list[StreamSpec]:
    names = {sub.stream for sub in spec.subscriptions}
    return [s for s in STREAMS if s.name in names]


def _checks(
    ctx: WorkerContext[ServiceSettings], runners: list[ConsumerRunner]
) -> dict[str, Callable[[], Awaitable[None]]]:
    async def nats_connected() -> None:
        if not ctx.nc.is_connected:
            raise ConnectionError("NATS is not connected")

    async def consumers_bound() -> None:
        if not all(r.ready.is_set() for r in runners):
            raise RuntimeError("consumers are still binding")

    return {"database": ctx.db.ping, "nats": nats_connected, "consumers": consumers_bound}


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
