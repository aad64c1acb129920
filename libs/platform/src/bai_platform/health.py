"""``/healthz`` (the process answers) and ``/readyz`` (it can take traffic).

Liveness never looks at dependencies, so a database outage does not restart every pod.
Readiness looks at them until they have answered once (``until_ready``): a new replica
gets traffic only once it can serve it. After that, a dependency every replica shares
(the database) going away does not make the replicas unready, all at once: the edge would
then answer with its own bare 503. Each request gets the service's own problem+json 503
with a Retry-After instead (``database_unavailable``), and traffic goes on to replicas
that serve again the moment the dependency is back.
"""

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bai_platform.errors import problem_response

ReadinessCheck = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


def until_ready(check: ReadinessCheck) -> ReadinessCheck:
    """``check`` until it has passed once; from then on, nothing (see the module docstring)."""
    passed = False

    async def checked() -> None:
        nonlocal passed
        if not passed:
            await check()
            passed = True

    return checked


async def _run_check(check: ReadinessCheck) -> str:
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return "ok"


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        if getattr(request.app.state, "draining", False):
            return problem_response(
                status=503, code="draining", detail="this process is shutting down"
            )
        checks: dict[str, ReadinessCheck] = getattr(request.app.state, "readiness_checks", {})
        results = dict(
            zip(checks, await asyncio.gather(*map(_run_check, checks.values())), strict=True)
        )
        if all(result == "ok" for result in results.values()):
            return JSONResponse({"status": "ready", "checks": results})
        return problem_response(
            status=503,
            code="not_ready",
            detail="a dependency is not ready",
            extra={"checks": results},
        )

    return router
