"""Website chat visitors: the widget lookup, the visitor token and where it may be used.

A visitor token is an EdDSA JWT signed with the gateway's current key (so the JWKS
verifies it), JOSE ``typ`` ``bai-visitor+jwt`` and audience ``bai-visitor``: it is never an
access token, and an access token is never one (both the type and the audience are
pinned). Claims: ``iss``, ``aud``, ``sub`` (``vis_...``), ``tid`` (tenant), ``wid``
(widget), ``org`` (the page's origin), ``iat``, ``nbf``, ``exp``.

It is minted for a widget key only once creator confirms (NATS request/reply, positive
answers cached briefly) that the widget is active and that the request's ``Origin`` is
one of its allowed origins. ForwardAuth accepts it only on ``CHAT_PATH_PREFIX`` and, when
the browser names an origin, only from the origin it was minted for.
"""

import re
import secrets
import time
from dataclasses import dataclass
from uuid import UUID

import jwt
from cachetools import TTLCache

from bai_contracts import (
    VISITOR_AUDIENCE,
    VISITOR_TOKEN_TYPE,
    WIDGET_LOOKUP_SUBJECT,
    WidgetFound,
    WidgetLookup,
)
from bai_platform.errors import BadRequest, Forbidden, NotFound
from bai_platform.messaging import NatsLink
from bai_platform.rpc import Unreachable, ask
from gateway.errors import InvalidToken
from gateway.service.callbacks import OwnerUnavailable
from gateway.service.signing_keys import KeyRing, verification_key
from gateway.service.tokens import LEEWAY_SECONDS

VISITOR_PREFIX = "vis_"
VISITOR_ID = re.compile(r"^vis_[A-Za-z0-9_-]{16,64}$")
WIDGET_KEY_PATTERN = r"^wk_[A-Za-z0-9_-]+$"
# Short: a widget deactivated or an origin removed stops minting tokens soon after.
WIDGET_CACHE_SECONDS = 30
WIDGET_LOOKUP_SECONDS = 2.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN = re.compile(
    r"^(?P<scheme>https?)://"
    r"(?P<host>[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?/?$"
)


class OriginRequired(BadRequest):
    code = "origin_required"


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class UnknownWidget(NotFound):
    code = "unknown_widget"


@dataclass(frozen=True, slots=True)
class VisitorClaims:
    visitor_id: str
    tenant_id: UUID
    widget_id: UUID
    origin: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Widget:
    """An active widget, as creator describes it."""

    tenant_id: UUID
    widget_id: UUID
    allowed_origins: frozenset[str]


def normalise_origin(value: str | None) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if not an origin.

    An origin has no path (a lone ``/`` is tolerated), query, fragment or credentials;
    the opaque ``null`` origin of sandboxed frames and ``file:`` pages is not one.
    """
    match = _ORIGIN.match((value or "").strip().lower())
    if match is None:
        return None
    scheme, host, digits = match.group("scheme", "host", "port")
    port = int(digits) if digits else _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        return None
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def new_visitor_id() -> str:
    return VISITOR_PREFIX + secrets.token_urlsafe(16)


def looks_like_visitor_id(value: str | None) -> bool:
    return value is not None and VISITOR_ID.match(value) is not None


def is_visitor_token(token: str) -> bool:
    """Whether the token declares itself a visitor token (unverified: this only routes it)."""
    try:
        typ = jwt.get_unverified_header(token).get("typ", "")
    except jwt.PyJWTError:
        return False
    return str(typ).lower() == VISITOR_TOKEN_TYPE


def issue_visitor_token(
    ring: KeyRing,
    *,
    issuer: str,
    ttl_seconds: int,
    tenant_id: UUID,
    widget_id: UUID,
    origin: str,
    visitor_id: str,
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": VISITOR_AUDIENCE,
        "sub": visitor_id,
        "tid": str(tenant_id),
        "wid": str(widget_id),
        "org": origin,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    key = ring.current
    return jwt.encode(
        claims,
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": VISITOR_TOKEN_TYPE},
    )


def verify_visitor_token(ring: KeyRing, token: str, *, issuer: str) -> VisitorClaims:
    """EdDSA only, a key of the ring, the visitor type and audience, ``iss``, ``exp``."""
    try:
        if not is_visitor_token(token):
            raise InvalidToken("this is not a visitor token")
        claims = jwt.decode(
            token,
            verification_key(ring, token),
            algorithms=["EdDSA"],
            audience=VISITOR_AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "tid", "wid", "org"]},
        )
        tenant_id, widget_id = UUID(str(claims["tid"])), UUID(str(claims["wid"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(f"the visitor token is not valid: {exc}") from exc
    visitor_id, origin = str(claims["sub"]), str(claims["org"])
    if not looks_like_visitor_id(visitor_id) or normalise_origin(origin) != origin:
        raise InvalidToken("the visitor token names no valid visitor or origin")
    return VisitorClaims(
        visitor_id=visitor_id,
        tenant_id=tenant_id,
        widget_id=widget_id,
        origin=origin,
        expires_at=int(claims["exp"]),
    )


def widget_of(subject: str) -> str:
    """The widget id in a visitor's subject (``visitor:<widget>:<visitor>``, made by
    ``bai_contracts.visitor_subject``); neither id contains a colon."""
    _, widget, _ = subject.split(":", 2)
    return widget


def check_visitor_origin(claims_origin: str, *, origin: str | None) -> None:
    """A visitor token is used from the page it was minted for whenever the request names
    an origin (where and how it may be used is ``bai_platform.access``'s rule)."""
    if origin is not None and normalise_origin(origin) != claims_origin:
        raise OriginNotAllowed("this visitor token belongs to another website")


class WidgetDirectory:
    """Creator's widgets, asked over NATS; active answers are kept a short while."""

    def __init__(
        self,
        *,
        link: NatsLink,
        subject: str = WIDGET_LOOKUP_SUBJECT,
        within: float = WIDGET_LOOKUP_SECONDS,
        cache_seconds: float = WIDGET_CACHE_SECONDS,
        cache_size: int = 10_000,
    ) -> None:
        self._link, self._within = link, within
        self.subject = subject  # tests point it at a stand-in nobody else answers
        self._cache: TTLCache[str, Widget] = TTLCache(maxsize=cache_size, ttl=cache_seconds)

    async def active(self, public_key: str) -> Widget:
        """The active widget with this key; ``UnknownWidget`` or ``OwnerUnavailable``."""
        widget = self._cache.get(public_key)
        if widget is not None:
            return widget
        try:
            found = await ask(
                self._link.client,
                self.subject,
                WidgetLookup(public_key=public_key),
                WidgetFound,
                within=self._within,
            )
        except (Unreachable, ValueError) as exc:  # ValueError: an answer that does not parse
            raise OwnerUnavailable("the chat widgets cannot be checked right now") from exc
        if not (found.found and found.active and found.tenant_id and found.widget_id):
            # Not cached: a widget created or switched on a moment later works at once.
            raise UnknownWidget("no active chat widget has this key")
        origins = (normalise_origin(origin) for origin in found.allowed_origins)
        widget = Widget(
            tenant_id=found.tenant_id,
            widget_id=found.widget_id,
            allowed_origins=frozenset(origin for origin in origins if origin is not None),
        )
        self._cache[public_key] = widget
        return widget


def admitted_origin(widget: Widget, origin: str | None) -> str:
    """The request's normalised origin when the widget may be embedded there."""
    normalised = normalise_origin(origin)
    if normalised is None or normalised not in widget.allowed_origins:
        raise OriginNotAllowed("this widget is not allowed on this website")
    return normalised
