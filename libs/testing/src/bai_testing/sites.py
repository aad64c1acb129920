"""A small website served on 127.0.0.1 for crawler tests: pages by path, a robots.txt,
redirects, failures to answer first, a delay per page, and a record of what was requested
(and of how many requests it served at once)."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from bai_testing.servers import served


@dataclass
class Site:
    """What the site serves: ``pages`` (path -> HTML), ``redirects`` (path -> Location)."""

    pages: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    robots: str = ""
    # path -> statuses answered before the page itself (e.g. [503, 503]), one per request.
    failures: dict[str, list[int]] = field(default_factory=dict)
    # Seconds each page takes to answer (to see requests overlap).
    delay: float = 0.0
    requested: list[str] = field(default_factory=list)
    base: str = ""
    at_once: int = 0
    most_at_once: int = 0
    # (path, arrived, answered) per request, in time.monotonic() seconds.
    spans: list[tuple[str, float, float]] = field(default_factory=list)


def _app(site: Site) -> Starlette:
    async def serve(request: Request) -> Response:
        arrived = time.monotonic()
        site.at_once += 1
        site.most_at_once = max(site.most_at_once, site.at_once)
        try:
            if site.delay and request.url.path != "/robots.txt":
                await asyncio.sleep(site.delay)
            return answer(request)
        finally:
            site.at_once -= 1
            site.spans.append((request.url.path, arrived, time.monotonic()))

    def answer(request: Request) -> Response:
        path = request.url.path
        site.requested.append(path)
        if site.failures.get(path):
            status = site.failures[path].pop(0)
            return PlainTextResponse("try again", status, headers={"Retry-After": "0"})
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
    async with served(_app(site)) as base:
        site.base = base
        yield site
