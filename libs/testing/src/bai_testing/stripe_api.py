"""A stand-in for Stripe's API in tests: a real HTTP server on 127.0.0.1 speaking Stripe's
wire protocol for the calls billing makes, recording every request it receives.

What it shares with Stripe: ``Authorization: Bearer <secret key>`` or 401; form-encoded
bodies with bracket nesting (``line_items[0][price]``) and unknown parameters refused;
JSON objects with ``id`` and ``object``; errors as ``{"error": {"type", "message", ...}}``
with Stripe's status codes; and idempotency as Stripe keeps it: a POST repeated with the
same ``Idempotency-Key`` and the same parameters gets the first answer again
(``Idempotent-Replayed: true``), with other parameters or on another endpoint a 400
``idempotency_error``.

Faults a test can ask for (``fail_next``, ``hang_next``, ``oversize_next``) happen in front
of the API, as a load balancer's would: they are recorded but never kept as an idempotent
answer, so the client's retry with the same key reaches the API.
"""

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bai_testing.servers import served

TEST_API_KEY = "sk_test_bai_local_stand_in_0000"
_MONTH = 30 * 86400
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
_ACCEPTS = {
    "customers": {"email", "name", "description", "metadata", "expand"},
    "checkout.session": {
        *("mode", "line_items", "customer", "client_reference_id", "metadata"),
        *("subscription_data", "success_url", "cancel_url", "allow_promotion_codes"),
        *("billing_address_collection", "customer_update", "locale", "expand"),
    },
    "billing_portal.session": {"customer", "return_url", "configuration", "locale", "expand"},
    "subscription.update": {"cancel_at_period_end", "metadata", "proration_behavior", "expand"},
}


@dataclass(frozen=True)
class Received:
    """One request as it reached the server."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    params: dict[str, Any]  # the form body (or query) with brackets unfolded

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, **more: str) -> None:
        super().__init__(message)
        self.status, self.body = status, {"type": type_, "message": message, **more}


@dataclass
class FakeStripe:
    """The server's state: objects, kept idempotent answers, requests and pending faults."""

    api_key: str = TEST_API_KEY
    # Prices that exist; None accepts any price id.
    prices: set[str] | None = None
    url: str = ""
    received: list[Received] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _kept: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict, init=False)
    _faults: list[tuple[str, int, str | None]] = field(default_factory=list, init=False)
    _release: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    # ---- what tests arrange ------------------------------------------------------------
    def fail_next(self, count: int = 1, *, status: int = 500, path: str | None = None) -> None:
        """Answer the next ``count`` requests (to ``path``, or any) with an ``api_error``."""
        self._faults.extend([("fail", status, path)] * count)

    def hang_next(self, count: int = 1, *, path: str | None = None) -> None:
        """Never answer the next ``count`` requests (until the server stops)."""
        self._faults.extend([("hang", 0, path)] * count)

    def oversize_next(self, count: int = 1, *, size: int = 2_000_000) -> None:
        """Pad the next ``count`` answers (whatever they are) to more than ``size`` bytes."""
        self._faults.extend([("oversize", size, None)] * count)

    def add_customer(self, *, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        customer = _object("customer", "cus", metadata=metadata or {}, email=None, name=None)
        self.customers[customer["id"]] = customer
        return customer

    def add_subscription(
        self, *, customer: str, price: str, status: str = "active", **metadata: str
    ) -> dict[str, Any]:
        """A subscription as Stripe holds it, with one item at ``price`` for a month."""
        start = int(time.time())
        item = _object("subscription_item", "si", quantity=1, current_period_start=start)
        item |= {
            "price": _object("price", "price", id=price),
            "current_period_end": start + 30 * 86400,
        }
        subscription = _object(
            "subscription", "sub", customer=customer, status=status, metadata=metadata
        )
        subscription |= {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None}
        subscription["items"] = {"object": "list", "data": [item], "has_more": False}
        self.subscriptions[subscription["id"]] = subscription
        return subscription

    # ---- what tests read ---------------------------------------------------------------
    def requests_to(self, method: str, path: str) -> list[Received]:
        return [r for r in self.received if r.method == method and r.path == path]

    def release_hangs(self) -> None:
        self._release.set()

    # ---- the API -------------------------------------------------------------------------
    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        _accepts(params, "customers")
        customer = _object(
            "customer",
            "cus",
            email=params.get("email"),
            name=params.get("name"),
            metadata=params.get("metadata", {}),
        )
        self.customers[customer["id"]] = customer
        return customer

    def create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        _accepts(params, "checkout.session")
        mode = _required(params, "mode")
        if mode not in ("payment", "setup", "subscription"):
            raise _invalid("Invalid mode: must be one of payment, setup, or subscription", "mode")
        self._existing_customer(params.get("customer"), "customer")
        items = params.get("line_items")
        if mode != "setup" and not items:
            raise _invalid("You must provide at least one line item.", "line_items")
        for index, item in enumerate(items or []):
            self._existing_price(item.get("price"), f"line_items[{index}][price]")
        session = _object(
            "checkout.session",
            "cs_test",
            **{k: params.get(k) for k in ("mode", "customer", "client_reference_id")},
            **{k: params.get(k) for k in ("success_url", "cancel_url")},
            metadata=params.get("metadata", {}),
            status="open",
            payment_status="unpaid",
            subscription=None,
        )
        session["url"] = f"https://checkout.stripe.com/c/pay/{session['id']}"
        self.checkout_sessions[session["id"]] = session
        return session

    def create_portal_session(self, params: dict[str, Any]) -> dict[str, Any]:
        _accepts(params, "billing_portal.session")
        customer = self._existing_customer(_required(params, "customer"), "customer")
        session = _object(
            "billing_portal.session", "bps", customer=customer, return_url=params.get("return_url")
        )
        session["url"] = f"https://billing.stripe.com/p/session/test_{secrets.token_hex(12)}"
        self.portal_sessions[session["id"]] = session
        return session

    def update_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _accepts(params, "subscription.update")
        subscription = self.retrieve_subscription(sub_id)
        if "cancel_at_period_end" in params:
            flag = params["cancel_at_period_end"]
            if flag not in ("true", "false"):
                raise _invalid("Invalid boolean: " + str(flag), "cancel_at_period_end")
            subscription["cancel_at_period_end"] = flag == "true"
        subscription["metadata"] |= params.get("metadata", {})
        return subscription

    def retrieve_subscription(self, sub_id: str) -> dict[str, Any]:
        if sub_id not in self.subscriptions:
            raise _missing("subscription", sub_id, "id")
        return self.subscriptions[sub_id]

    def _existing_customer(self, customer: Any, param: str) -> Any:
        if customer is not None and customer not in self.customers:
            raise _missing("customer", str(customer), param)
        return customer

    def _existing_price(self, price: Any, param: str) -> None:
        if not isinstance(price, str) or not price:
            raise _invalid(f"Missing required param: {param}.", param, "parameter_missing")
        if self.prices is not None and price not in self.prices:
            raise _missing("price", price, param)

    # ---- the protocol ----------------------------------------------------------------------
    async def handle(self, request: Request, call: Callable[[dict[str, Any]], Any]) -> Response:
        body = (await request.body()).decode()
        params = parse_form(body if request.method == "POST" else request.url.query)
        seen = Received(request.method, request.url.path, dict(request.headers), params)
        self.received.append(seen)
        fault = self._take_fault(seen.path)
        if fault is not None and fault[0] != "oversize":
            return await self._faulty(*fault)
        try:
            self._authorize(seen.headers.get("authorization", ""))
            if request.method == "POST":
                status, answer, replayed = self._idempotent(seen, lambda: call(params))
            else:
                status, answer, replayed = 200, call(params), False
        except StripeError as exc:
            status, answer, replayed = exc.status, {"error": exc.body}, False
        if fault is not None:  # the true answer, padded past any sane size
            answer = answer | {"padding": "x" * fault[1]}
        return _answer(status, answer, replayed=replayed)

    def _take_fault(self, path: str) -> tuple[str, int] | None:
        due = [i for i, (_, _, only) in enumerate(self._faults) if only in (None, path)]
        if not due:
            return None
        kind, value, _ = self._faults.pop(due[0])
        return kind, value

    async def _faulty(self, kind: str, status: int) -> Response:
        if kind == "hang":
            await self._release.wait()
            return _answer(503, {"error": {"type": "api_error", "message": "Server stopped."}})
        error = {"type": "api_error", "message": "An unknown error occurred (stand-in fault)."}
        return _answer(status, {"error": error})

    def _authorize(self, authorization: str) -> None:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise StripeError(401, "invalid_request_error", "You did not provide an API key.")
        if not secrets.compare_digest(key, self.api_key):
            masked = f"{key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}"
            raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")

    def _idempotent(
        self, seen: Received, run: Callable[[], dict[str, Any]]
    ) -> tuple[int, dict[str, Any], bool]:
        key = seen.idempotency_key
        if key is None:
            return 200, run(), False
        if len(key) > 255:
            raise _invalid("Idempotency keys may be at most 255 characters.", "idempotency_key")
        fingerprint = json.dumps([seen.method, seen.path, seen.params], sort_keys=True)
        if key in self._kept:
            kept_fingerprint, status, kept_answer = self._kept[key]
            if kept_fingerprint != fingerprint:
                raise StripeError(400, "idempotency_error", _MISMATCH.format(key=key))
            return status, kept_answer, True
        # An answer is kept once the endpoint has run; parameters that fail validation (the
        # only errors of this stand-in) leave nothing kept, as at Stripe.
        answer = run()
        self._kept[key] = (fingerprint, 200, answer)
        return 200, answer, False

    def app(self) -> Starlette:
        async def customers(request: Request) -> Response:
            return await self.handle(request, self.create_customer)

        async def checkout_sessions(request: Request) -> Response:
            return await self.handle(request, self.create_checkout_session)

        async def portal_sessions(request: Request) -> Response:
            return await self.handle(request, self.create_portal_session)

        async def subscription(request: Request) -> Response:
            sub_id = str(request.path_params["sub_id"])
            if request.method == "GET":
                return await self.handle(request, lambda _: self.retrieve_subscription(sub_id))
            return await self.handle(request, lambda p: self.update_subscription(sub_id, p))

        return Starlette(
            routes=[
                Route("/v1/customers", customers, methods=["POST"]),
                Route("/v1/checkout/sessions", checkout_sessions, methods=["POST"]),
                Route("/v1/billing_portal/sessions", portal_sessions, methods=["POST"]),
                Route("/v1/subscriptions/{sub_id}", subscription, methods=["GET", "POST"]),
            ]
        )


_MISMATCH = (
    "Keys for idempotent requests can only be used with the same parameters they were first"
    " used with. Try using a key other than '{key}' if you meant to execute a different"
    " request."
)


def parse_form(encoded: str) -> dict[str, Any]:
    """A Stripe form body as nested values: ``a[b][0][c]=v`` is ``{"a": {"b": [{"c": "v"}]}}``."""
    root: dict[str, Any] = {}
    for name, value in parse_qsl(encoded, keep_blank_values=True):
        match = _KEY.match(name)
        if match is None:
            raise _invalid(f"Invalid parameter name: {name}", name)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: dict[str, Any]) -> dict[str, Any]:
    for key, value in node.items():
        if isinstance(value, dict):
            value = _lists(value)
            if value and all(k.isdigit() for k in value):
                value = [value[k] for k in sorted(value, key=int)]
            node[key] = value
    return node


def _accepts(params: dict[str, Any], endpoint: str) -> None:
    for name in params:
        if name not in _ACCEPTS[endpoint]:
            raise _invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")


def _required(params: dict[str, Any], name: str) -> Any:
    if not params.get(name):
        raise _invalid(f"Missing required param: {name}.", name, "parameter_missing")
    return params[name]


def _invalid(message: str, param: str, code: str = "parameter_invalid") -> StripeError:
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def _missing(kind: str, object_id: str, param: str) -> StripeError:
    message = f"No such {kind}: '{object_id}'"
    return StripeError(404, "invalid_request_error", message, param=param, code="resource_missing")


def _object(kind: str, prefix: str, **values: Any) -> dict[str, Any]:
    base = {"id": f"{prefix}_{secrets.token_hex(7)}", "object": kind}
    return base | {"created": int(time.time()), "livemode": False} | values


def _answer(status: int, body: dict[str, Any], *, replayed: bool = False) -> Response:
    headers = {"Request-Id": f"req_{secrets.token_hex(7)}", "Stripe-Version": "stand-in"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


@contextlib.asynccontextmanager
async def stripe_server(
    *, api_key: str = TEST_API_KEY, prices: set[str] | None = None
) -> AsyncIterator[FakeStripe]:
    """Serve a ``FakeStripe`` for the block; its ``url`` is the ``stripe_api_base``."""
    fake = FakeStripe(api_key=api_key, prices=prices)
    async with served(fake.app()) as url:
        fake.url = url
        try:
            yield fake
        finally:
            fake.release_hangs()
