"""A stand-in for a tenant's n8n workflow: a real HTTP server on 127.0.0.1 that records
what was dispatched to it and answers as told. Tests then play the workflow's part of the
contract (a signed callback to the ``callback_url`` it was given)."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bai_testing.servers import served


@dataclass(frozen=True)
class Dispatched:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Workflow:
    """What reached the workflow, and how it answers next."""

    url: str = ""
    received: list[Dispatched] = field(default_factory=list)
    status: int = 200
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_dispatch(self, *, within: float = 20.0, after: int = 0) -> Dispatched:
        """The first dispatch past the ``after`` already seen, waiting for it if need be."""
        async with asyncio.timeout(within):
            while len(self.received) <= after:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received[after]


def _app(workflow: Workflow) -> Starlette:
    async def hook(request: Request) -> Response:
        body = await request.body()
        workflow.received.append(Dispatched(request.url.path, dict(request.headers), body))
        workflow.arrived.set()
        if workflow.status >= 400:
            return JSONResponse({"message": "workflow failed"}, status_code=workflow.status)
        return JSONResponse({"accepted": True}, status_code=workflow.status)

    return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])


@contextlib.asynccontextmanager
async def workflow_server(path: str = "/webhook/bai") -> AsyncIterator[Workflow]:
    """Serve a workflow webhook at ``http://127.0.0.1:<port><path>`` for the block."""
    workflow = Workflow()
    async with served(_app(workflow)) as base:
        workflow.url = f"{base}{path}"
        yield workflow
