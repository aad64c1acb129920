"""``/auth/verify``, the ForwardAuth decision, answered ahead of the app's middleware stack.

Traefik asks it before every protected request, so its cost is added to every request at
the edge. It is a plain ASGI layer, outermost on the gateway's app: it reads the four
headers it needs straight from the scope, asks ``ForwardAuth.decide`` and answers. What
the other routes go through (routing, FastAPI's dependency resolution, the request span,
the body cap, the idempotency claim, the RateLimit echo) has nothing to do here: the
request has no body, the decision sets the RateLimit fields itself, and Traefik's own
span covers the hop. Its requests are still counted and timed in
``bai_http_requests_total`` and ``bai_http_request_duration_seconds`` under the route
``/auth/verify``.

Answers: 200 with ``X-BAI-Identity`` and the RateLimit fields (Traefik copies them onto the
forwarded request), or the decision's problem+json (401, 403, 429 with its headers) with the
caller's path as ``instance``; a database away for a moment is 503 with Retry-After, as on
every route, and anything else a logged 500 problem.
"""

import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from bai_platform.app_state import held
from bai_platform.edge import AUTH_VERIFY_PATH
from bai_platform.errors import ServiceError, problem_response, unexpected_error_response
from bai_platform.identity import IDENTITY_HEADER
from bai_platform.telemetry import LATENCY, REQUESTS
from gateway.state import GatewayState

_WANTED = {
    b"authorization": "authorization",
    b"x-forwarded-uri": "forwarded_uri",
    b"x-forwarded-method": "method",
    b"origin": "origin",
}
_IDENTITY = IDENTITY_HEADER.lower().encode("latin-1")


class ForwardAuthEndpoint:
    """Answers ``/auth/verify`` itself; hands every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != AUTH_VERIFY_PATH:
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        try:
            status = await self._answer(scope, receive, send)
        finally:
            REQUESTS.labels("gateway", scope["method"], AUTH_VERIFY_PATH, str(status)).inc()
            LATENCY.labels("gateway", scope["method"], AUTH_VERIFY_PATH).observe(
                time.perf_counter() - started
            )

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        asked: dict[str, str] = {}
        for name, value in scope["headers"]:
            field = _WANTED.get(name)
            if field is not None and field not in asked:  # the first, as Starlette reads it
                asked[field] = value.decode("latin-1")
        try:
            allowed = await held(scope["app"], GatewayState).forward_auth.decide(
                authorization=asked.get("authorization"),
                forwarded_uri=asked.get("forwarded_uri"),
                method=asked.get("method"),
                origin=asked.get("origin"),
            )
        except ServiceError as exc:  # Traefik relays this answer: name the caller's path in it
            path = urlsplit(asked.get("forwarded_uri") or "").path or None
            refusal = problem_response(
                status=exc.status_code,
                code=exc.code,
                detail=exc.detail,
                instance=path,
                headers=exc.headers,
            )
            await refusal(scope, receive, send)
            return exc.status_code
        except Exception as exc:
            failure = await unexpected_error_response(Request(scope, receive), exc)
            await failure(scope, receive, send)
            return failure.status_code
        headers = [(_IDENTITY, allowed.identity.encode("latin-1"))]
        headers += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in allowed.headers.items()
        ]
        headers.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 200
