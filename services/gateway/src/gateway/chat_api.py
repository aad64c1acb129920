"""The website chat's public routes: visitor tokens, CORS preflights and the widget script.

None of them takes a credential. The chat itself (``/v1/creator/chat/...``) is creator's,
reached through ForwardAuth with a visitor token; only its preflights end here, because a
browser sends them without the token (the real requests are guarded by the token and the
origin bound into it).

Visitor tokens are rationed per client IP and per widget (``visitor-token-ip``,
``visitor-token-widget``): each token names a visitor, and every visitor has a chat quota
of their own, so minting at will would mean quota at will.
"""

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from bai_platform.app_state import held
from bai_platform.errors import ServiceError
from gateway.deps import LIMIT_PUBLIC_BY_IP, Auth, client_key
from gateway.errors import enforce
from gateway.schemas import VisitorTokenRequest, VisitorTokenResponse
from gateway.service.visitors import (
    OriginNotAllowed,
    OriginRequired,
    Widget,
    admitted_origin,
    issue_visitor_token,
    looks_like_visitor_id,
    new_visitor_id,
    normalise_origin,
)
from gateway.state import GatewayState

router = APIRouter(tags=["chat"])

PREFLIGHT_MAX_AGE_SECONDS = 600
WIDGET_SCRIPT_MAX_AGE_SECONDS = 300


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        # The widget reads when it may come back after a 429.
        "Access-Control-Expose-Headers": "Retry-After, RateLimit, RateLimit-Policy",
        "Vary": "Origin",
    }


@router.post(
    "/v1/chat/visitor-token",
    status_code=status.HTTP_201_CREATED,
    dependencies=[LIMIT_PUBLIC_BY_IP],
)
async def visitor_token(
    body: VisitorTokenRequest,
    request: Request,
    response: Response,
    auth: Auth,
    origin: Annotated[str | None, Header()] = None,
) -> VisitorTokenResponse:
    """A short-lived token for one visitor of a website that embeds an active widget."""
    if origin is None or not origin.strip():
        raise OriginRequired("the Origin header is required: call this from the website")
    origin = origin.strip()
    widgets = held(request, GatewayState).widgets
    try:
        widget = await widgets.active(body.widget_key)
        bound = admitted_origin(widget, origin)
    except OriginNotAllowed:
        raise  # no CORS headers: the page may not read why
    except ServiceError as exc:  # the widget on the page may read why (404, 503)
        if normalise_origin(origin) is not None:
            exc.headers.update(cors_headers(origin))
        raise
    response.headers.update(await _ration(request, widget, origin))
    # A returning visitor keeps their id (and so their conversations); others get a new one.
    visitor_id = body.visitor_id if looks_like_visitor_id(body.visitor_id) else None
    visitor_id = visitor_id or new_visitor_id()
    settings = auth.settings
    token = issue_visitor_token(
        auth.ring,
        issuer=settings.token_issuer,
        ttl_seconds=settings.visitor_token_ttl_seconds,
        tenant_id=widget.tenant_id,
        widget_id=widget.widget_id,
        origin=bound,
        visitor_id=visitor_id,
    )
    response.headers.update({**cors_headers(origin), "Cache-Control": "no-store"})
    return VisitorTokenResponse(
        token=token,
        expires_in=settings.visitor_token_ttl_seconds,
        visitor_id=visitor_id,
    )


async def _ration(request: Request, widget: Widget, origin: str) -> dict[str, str]:
    """One token more for this client IP and this widget, or 429 that the page may read.

    Every mint counts, a returning visitor's too: the visitor id is the caller's word."""
    state = held(request, GatewayState)
    limits, limiter = state.settings.rate_limits, state.rate_limiter
    decision = await limiter.check_all(
        [
            (limits.mint_ip_policy, client_key(request)),
            (limits.mint_widget_policy, f"widget:{widget.widget_id}"),
        ]
    )
    try:
        return enforce(decision)
    except ServiceError as exc:
        exc.headers.update(cors_headers(origin))
        raise


@router.options("/v1/chat/{rest:path}", include_in_schema=False)
@router.options("/v1/creator/chat/{rest:path}", include_in_schema=False)
async def preflight(origin: Annotated[str | None, Header()] = None) -> Response:
    """CORS preflight of the chat routes; answered without a credential."""
    headers = {
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        "Vary": "Origin",
    }
    if origin is not None and normalise_origin(origin) is not None:
        headers["Access-Control-Allow-Origin"] = origin.strip()
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)


@router.get("/v1/chat/widget.js", include_in_schema=False)
async def widget_script() -> Response:
    """The embeddable widget: ``<script src=".../v1/chat/widget.js" data-widget-key=...>``."""
    return Response(
        content=_widget_source(),
        media_type="application/javascript",
        headers={
            "Cache-Control": f"public, max-age={WIDGET_SCRIPT_MAX_AGE_SECONDS}",
            # Any site may load it; a cross-origin fetch of it (integrity checks) may read it.
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        },
    )


@cache
def _widget_source() -> str:
    return resources.files("gateway").joinpath("widget.js").read_text(encoding="utf-8")
