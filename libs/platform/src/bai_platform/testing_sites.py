"""A small website served on 127.0.0.1 for crawler tests: pages by path, a robots.txt,
redirects, and a record of what was requested."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Site:
    """What the site serves: ``pages`` (path -> HTML), ``redirects`` (path -> Location)."""

    pages: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    robots: str = ""
    requested: list[str] = field(default_factory=list)
    base: str = ""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _app(site: Site) -> Starlette:
    async def serve(request: Request) -> Response:
        path = request.url.path
        site.requested.append(path)
        if path == "/robots.txt":
            return PlainTextResponse(site.robots) if site.robots else PlainTextResponse("", 404)
        if path in site.redirects:
            return RedirectResponse(site.redirects[path], status_code=302)
        if path in site.pages:
            return Response(site.pages[path], media_type="text/html; charset=utf-8")
        return PlainTextResponse("not found", 404)

    return Starlette(routes=[Route("/{path:path}", serve)])


@contextlib.asynccontextmanager
async def website(site: Site) -> AsyncIterator[Site]:
    """Serve ``site`` at ``site.base`` (http://127.0.0.1:<port>) for the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    site.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = _Server(uvicorn.Config(_app(site), lifespan="off", log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110  # uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield site
    finally:
        server.should_exit = True
        await task
        sock.close()
