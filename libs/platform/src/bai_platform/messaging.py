"""NATS connection and JetStream stream provisioning."""

import asyncio
import contextlib
from collections.abc import Iterable

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from bai_contracts import StreamSpec

DUPLICATE_WINDOW_SECONDS = 120.0

log = structlog.get_logger("bai.messaging")


async def connect(url: str, *, name: str) -> NatsClient:
    """Connect and keep reconnecting forever: a worker outlives NATS restarts."""

    async def on_disconnect() -> None:
        log.warning("nats_disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", client=name)

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def stream_config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=spec.subjects,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


async def ensure_streams(js: JetStreamContext, specs: Iterable[StreamSpec]) -> None:
    """Create each stream, or bring its subjects up to date; safe to repeat."""
    for spec in specs:
        config = stream_config(spec)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:  # created meanwhile by another worker
                await js.update_stream(config)
        else:
            await js.update_stream(config)


class NatsLink:
    """A NATS connection an API process can live without until it is there.

    ``run`` keeps trying to connect in the background (nats-py gives up on a failed first
    connect) and then holds the connection, which reconnects by itself, until ``stop``.
    """

    def __init__(self, url: str, *, name: str, retry_seconds: float = 2.0) -> None:
        self.url, self.name, self.retry_seconds = url, name, retry_seconds
        self.client: NatsClient | None = None
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while self.client is None and not stop.is_set():
            try:
                self.client = await connect(self.url, name=self.name)
                self.connected.set()
            except (TimeoutError, OSError, NatsError):
                log.warning("nats_unreachable", client=self.name, retry_in=self.retry_seconds)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_seconds)
        await stop.wait()
        if self.client is not None:
            await self.client.drain()
