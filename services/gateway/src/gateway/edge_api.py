"""Pages for the answers Traefik gives itself, so that they are problem+json too.

Traefik's rate limiter refuses in plain text. In front of a shield whose refusals it should
not give bare, the edge's ``errors`` middleware (``shield-problems`` in
``bai_platform.edge``) asks here for a page and sends it with the original status,
keeping this page's headers (Content-Type, Retry-After). Traefik calls the gateway's
service directly: no edge route leads here.

Only the statuses listed have a page; any other is a 404, so that a route misconfigured
to ask for one shows up as such instead of as a made-up problem.
"""

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from bai_platform.edge import PROBLEM_PAGE_PATH
from bai_platform.errors import NotFound, problem_response

router = APIRouter(include_in_schema=False)

# Traefik's token bucket refills in well under a second at every shield's rate.
SHIELD_RETRY_AFTER_SECONDS = 1
PAGES = {
    429: ("rate_limited", "Too many requests from this client address; slow down."),
}


@router.get(PROBLEM_PAGE_PATH)
async def edge_problem(status: Annotated[int, Path(ge=400, le=599)]) -> JSONResponse:
    if status not in PAGES:
        raise NotFound(f"no edge page for {status}")
    code, detail = PAGES[status]
    retry_after = {"Retry-After": str(SHIELD_RETRY_AFTER_SECONDS)}
    return problem_response(status=status, code=code, detail=detail, headers=retry_after)
