"""/readyz: a replica is ready once its dependencies have answered; a shared dependency
going away later does not take every replica out of the edge at once (bai_platform.health)."""

import httpx
from fastapi import FastAPI

from bai_platform.health import ReadinessCheck, health_router, until_ready


class Database:
    """A dependency that answers or not, as the test says."""

    def __init__(self) -> None:
        self.up = False
        self.asked = 0

    async def ping(self) -> None:
        self.asked += 1
        if not self.up:
            raise ConnectionRefusedError("nothing listens")


def _app(checks: dict[str, ReadinessCheck]) -> FastAPI:
    app = FastAPI()
    app.include_router(health_router())
    app.state.readiness_checks = checks
    return app


async def _ready(app: FastAPI) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return (await client.get("/readyz")).status_code


async def test_a_new_replica_is_ready_only_once_the_database_answers() -> None:
    database = Database()
    app = _app({"database": until_ready(database.ping)})

    assert await _ready(app) == 503
    database.up = True
    assert await _ready(app) == 200


async def test_a_ready_replica_stays_ready_while_the_shared_database_is_away() -> None:
    database = Database()
    database.up = True
    app = _app({"database": until_ready(database.ping)})
    assert await _ready(app) == 200

    database.up = False  # every replica would fail the same check at the same moment
    assert await _ready(app) == 200
    assert database.asked == 1  # requests answer 503 database_unavailable themselves


async def test_a_check_without_until_ready_follows_its_dependency() -> None:
    database = Database()
    database.up = True
    app = _app({"database": database.ping})
    assert await _ready(app) == 200
    database.up = False
    assert await _ready(app) == 503
