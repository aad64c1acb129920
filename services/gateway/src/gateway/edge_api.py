"""Pages for the answers Traefik gives itself, so that they are problem+json too.

Traefik's rate limiter refuses in plain text, and so do its 502 (no replica of a service
could be reached, or one died mid-answer) and 504. The edge's ``errors`` middlewares
(``shield-problems`` and ``edge-problems`` in ``bai_platform.edge``) ask here for a page
and send it with the original status, keeping this page's headers (Content-Type,
Retry-After). Traefik calls the gateway's service directly: no edge route leads here.

Only the statuses listed have a page; any other is a 404, so that a route misconfigured
to ask for one shows up as such instead of as a made-up problem.
"""

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from bai_platform.edge import PROBLEM_PAGE_PATH
from bai_platform.errors import NotFound, problem_response

router = APIRouter(include_in_schema=False)

# Traefik's token bucket refills in well under a second at every shield's rate, and a
# replica that could not be reached is replaced (or out of rotation) within seconds.
PAGES: dict[int, tuple[str, str, int]] = {
    429: ("rate_limited", "Too many requests from this client address; slow down.", 1),
    502: (
        "bad_gateway",
        "The service behind the edge could not be reached, or stopped mid-answer. A request "
        "that changes something may or may not have been applied: retry it with the same "
        "Idempotency-Key.",
        2,
    ),
    504: ("gateway_timeout", "The service behind the edge did not answer in time.", 2),
}


@router.get(PROBLEM_PAGE_PATH)
async def edge_problem(status: Annotated[int, Path(ge=400, le=599)]) -> JSONResponse:
    if status not in PAGES:
        raise NotFound(f"no edge page for {status}")
    code, detail, seconds = PAGES[status]
    retry_after = {"Retry-After": str(seconds)}
    return problem_response(status=status, code=code, detail=detail, headers=retry_after)
