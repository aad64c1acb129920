"""A real HTTP server inside a test: an ASGI app served by uvicorn on 127.0.0.1, port 0."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the signals belong to the test runner


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` for the block; yields its base URL ``http://127.0.0.1:<port>``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    # A hostile stand-in may still be dripping to a client at the end of the block: close
    # such connections after a moment instead of waiting for them.
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110  # uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def dripping_body(
    *, every: float = 0.2, lasting: float = 600.0, byte: bytes = b" "
) -> AsyncIterator[bytes]:
    """A body that a hostile server sends one byte at a time: every read succeeds well
    within any per-read timeout, so only an overall deadline ends the exchange. Serve it
    with ``StreamingResponse(dripping_body(), ...)``; it ends by itself after ``lasting``."""
    for _ in range(max(1, int(lasting / every))):
        yield byte
        await asyncio.sleep(every)
