"""NATS connection and JetStream stream provisioning."""

from collections.abc import Iterable

import nats
import structlog
from nats.aio.client import Client as NatsClient
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
