"""An api asked to stop first drains: /readyz says 503 while it goes on serving for the
drain delay (a balancer takes it out of rotation), then live streams are told to end and
uvicorn stops listening."""

import asyncio
import socket

import httpx
import uvicorn
from fastapi import FastAPI

from bai_platform.health import health_router
from bai_platform.runtime import DrainingServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_stopping_api_says_not_ready_and_still_serves_for_the_drain_delay() -> None:
    app = FastAPI()
    app.include_router(health_router())
    drained: list[float] = []
    app.state.on_draining = [lambda: drained.append(asyncio.get_running_loop().time())]
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = DrainingServer(config, app, drain_delay=1.5)
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        assert (await client.get("/readyz")).status_code == 200

        server.should_exit = True  # what SIGTERM does
        async with asyncio.timeout(5):
            while (ready := await client.get("/readyz")).status_code == 200:
                await asyncio.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json()["code"] == "draining"
        assert (await client.get("/healthz")).status_code == 200  # still serving
        assert drained == []  # live streams end only once the delay is over

    await asyncio.wait_for(serving, timeout=10)
    assert len(drained) == 1
