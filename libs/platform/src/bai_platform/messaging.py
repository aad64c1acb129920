"""NATS connection and JetStream stream provisioning.

A service connects as its own NATS user (``NatsAuth``: ``BAI_NATS_USER`` and
``BAI_NATS_PASSWORD``) with replies under its own inbox prefix, which is all its
permissions let it subscribe to (``bai_platform.nats_permissions``). Without a password
the URL's credentials, if any, are used (the tests' admin URL, an external ``NATS_URL``).
A permissions violation the server reports is logged as an error: it is a bug in the
permission table or an attempt to act as another service, never noise.

Streams are provisioned by the workers that own them; ``BAI_STREAM_REPLICAS`` sets their
replica count (3 in production's 3-node cluster). A consumed stream that is missing is
created with the contract's configuration but never updated by anyone but its owner.
"""

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from pydantic import SecretStr

from bai_contracts import StreamSpec
from bai_platform.nats_permissions import inbox_prefix

DUPLICATE_WINDOW_SECONDS = 120.0
PERMISSIONS_VIOLATION = "permissions violation"

log = structlog.get_logger("bai.messaging")


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """Whom a process connects as, and which server it trusts.

    Without a password it connects as the URL says. With ``ca_file`` it speaks TLS from the
    first byte (``handshake_first``; the server's ``tls`` block says the same) and accepts
    only a server certificate that CA signed, for the URL's host name: a server that offers
    no TLS is refused, so the password never crosses the network in the clear.
    """

    user: str
    password: SecretStr | None = None
    ca_file: str | None = None

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.password is not None:
            options |= {
                "user": self.user,
                "password": self.password.get_secret_value(),
                "inbox_prefix": inbox_prefix(self.user),
            }
        if self.ca_file:
            options |= {
                "tls": ssl.create_default_context(cafile=self.ca_file),
                "tls_handshake_first": True,
            }
        return options


async def connect(url: str, *, name: str, auth: NatsAuth | None = None) -> NatsClient:
    """Connect and keep reconnecting forever: a worker outlives NATS restarts."""

    async def on_disconnect() -> None:
        log.warning("nats_disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", client=name)

    async def on_error(error: Exception) -> None:
        # A logger of the moment, not the module's cached one, so capture_logs sees it.
        errors = structlog.get_logger("bai.messaging")
        if PERMISSIONS_VIOLATION in str(error).lower():
            errors.error("nats_permissions_violation", client=name, error=str(error))
        else:
            errors.warning("nats_error", client=name, error=repr(error))

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
        **(auth.options() if auth else {}),
    )


def stream_config(spec: StreamSpec, *, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=spec.subjects,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext, specs: Iterable[StreamSpec], *, replicas: int = 1
) -> None:
    """Create each stream, or bring its subjects and replica count up to date; safe to
    repeat. JetStream changes the replicas of a stream in place (1 to 3 and back) on a
    cluster with enough servers; a single server refuses more than 1."""
    for spec in specs:
        config = stream_config(spec, replicas=replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:  # created meanwhile by another worker
                await js.update_stream(config)
        else:
            await js.update_stream(config)


async def ensure_consumed_streams(
    js: JetStreamContext, specs: Iterable[StreamSpec], *, replicas: int = 1
) -> None:
    """Create a consumed stream that is missing (its owner has not started yet); leave an
    existing one as its owner made it (the consumer may not change it)."""
    for spec in specs:
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # its owner made it meanwhile
                await js.add_stream(stream_config(spec, replicas=replicas))


class NatsLink:
    """A NATS connection an API process can live without until it is there.

    ``run`` keeps trying to connect in the background (nats-py gives up on a failed first
    connect) and then holds the connection, which reconnects by itself, until ``stop``.
    """

    def __init__(
        self, url: str, *, name: str, auth: NatsAuth | None = None, retry_seconds: float = 2.0
    ) -> None:
        self.url, self.name, self.retry_seconds = url, name, retry_seconds
        self.auth = auth
        self.client: NatsClient | None = None
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while self.client is None and not stop.is_set():
            try:
                self.client = await connect(self.url, name=self.name, auth=self.auth)
                self.connected.set()
            except (TimeoutError, OSError, NatsError):
                log.warning("nats_unreachable", client=self.name, retry_in=self.retry_seconds)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_seconds)
        await stop.wait()
        if self.client is not None:
            await self.client.drain()
