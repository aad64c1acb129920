"""A small website served on 127.0.0.1 for crawler tests: pages by path, a robots.txt,
redirects, and a record of what was requested."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from bai_platform.testing_servers import served


@dataclass
class Site:
    """What the site serves: ``pages`` (path -> HTML), ``redirects`` (path -> Location)."""

    pages: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    robots: str = ""
    requested: list[str] = field(default_factory=list)
    base: str = ""


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
    async with served(_app(site)) as base:
        site.base = base
        yield site
