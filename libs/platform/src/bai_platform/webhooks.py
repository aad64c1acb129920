"""Signed webhooks to and from tenants' n8n workflows.

Signature (both ways): ``X-BAI-Timestamp: <unix seconds>`` and ``X-BAI-Signature: v1=<hex>``
where the hex is HMAC-SHA256(secret, f"{timestamp}.{raw_body}"). Several ``v1=`` values,
comma-separated, may come while a secret is being rolled: any match is enough. Only ``v1``
counts. The timestamp must be within ``tolerance`` seconds of now, both ways. Comparisons
are in constant time, on the raw bytes, never on re-serialised JSON.

Outbound (``WebhookDispatcher.dispatch``): the payload is compact, key-sorted UTF-8 JSON,
POSTed with ``Content-Type: application/json``, ``X-BAI-Timestamp``, ``X-BAI-Signature``,
``X-BAI-Event-Id`` when given (receivers dedupe on it, so a retry is safe), ``X-BAI-Secret``
only when asked (the original system's shared-secret header) and ``User-Agent``. An empty
secret is refused: nothing goes out unsigned. Redirects are not followed and the answer's
body is read only up to ``max_response_bytes``. The name is resolved and checked before
every call (``bai_platform.destinations``) and the connection goes to a checked address
(the next one when it refuses), with ``Host`` and TLS SNI set to the name: a name re-pointed
after the check (DNS rebinding) is never followed.

Deadline: ``timeout_seconds`` bounds the whole call, from resolving the name (the tenant
runs its name server) to the last byte of the answer (a server dripping a byte at a time
never trips a per-read timeout); past it the call fails retryably.

Outcomes: 2xx is ``Delivered``. Everything else is ``DispatchFailed`` with a message fit to
show the tenant (never the URL's path, query or credentials): retryable for 408, 425, 429,
5xx, timeouts and connection failures; not retryable for 3xx and other 4xx.

Circuit breaker, per endpoint (scheme, host, port): ``failure_threshold`` retryable failures
in a row open it for ``open_seconds``; while open, ``dispatch`` raises ``CircuitOpen`` without
a network call. Then one trial call goes through (half-open): an answer that is not a
retryable failure closes it, a retryable failure opens it again for ``open_seconds``. A 3xx
or other 4xx proves the endpoint is alive, so it counts as an answer, not a failure.
"""

import asyncio
import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import LRUCache

from bai_platform.destinations import (
    DestinationRefused,
    IPAddress,
    NameNotResolved,
    Resolver,
    checked_addresses,
    send_pinned,
    system_resolver,
)

DEFAULT_TOLERANCE_SECONDS = 300
# Unix seconds in ASCII digits only: str.isdigit() also accepts "²" (which int() refuses),
# and int() refuses more than 4,300 digits; either would be a 500 instead of a 401.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_MESSAGE_CHARS = 500
MAX_DETAIL_CHARS = 300
BREAKER_ENDPOINTS = 10_000


class SignatureError(ValueError):
    """The callback is not signed as it must be; the reason is safe to show."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-BAI-Signature`` value for ``body`` (what dispatchers and tests send)."""
    return f"v1={_digest(secret, str(timestamp), body)}"


def verify_signature(
    *,
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    if not secret:
        raise SignatureError("no signing secret is configured for this job")  # never verify
    if not timestamp or not signature:
        raise SignatureError("X-BAI-Timestamp and X-BAI-Signature are required")
    if not TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"X-BAI-Timestamp is not within {tolerance} s of now")
    expected = _digest(secret, timestamp, body)
    candidates = [v.strip()[3:] for v in signature.split(",") if v.strip().startswith("v1=")]
    if not any(_same(expected, c) for c in candidates):
        raise SignatureError("X-BAI-Signature does not match the body")


def verify_secret_header(*, secret: str, presented: str | None) -> None:
    """The original system's shared-secret header, for engines configured to send it."""
    if not secret or not presented or not _same(secret, presented):
        raise SignatureError("X-BAI-Secret does not match")


def _same(expected: str, presented: str) -> bool:
    """Constant-time equality of any two texts (``compare_digest`` refuses non-ASCII str)."""
    return hmac.compare_digest(expected.encode(), presented.encode())


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def backoff_delay(
    attempt: int, *, base: float = 2.0, cap: float = 300.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry ``attempt`` (from 1): exponential with full jitter.

    Full jitter spreads the retries of many jobs that failed together (one n8n outage)
    instead of having them all come back at the same instant.
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    # 2.0 ** 1024 overflows a float; far before that the cap has won anyway.
    ceiling = cap if attempt > 1000 else min(cap, base * 2.0 ** (attempt - 1))
    return (rng or _jitter).uniform(0.0, max(0.0, ceiling))


# Not for secrets, but SystemRandom needs no seeding and no lock between event loops.
_jitter = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class Delivered:
    """The workflow accepted the job (2xx)."""

    status_code: int
    body: bytes  # capped to max_response_bytes


class DispatchFailed(Exception):
    """The workflow did not accept the job.

    ``retryable`` says whether trying later may help; ``message`` is readable and
    size-capped (shown to tenants).
    """

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        self.message = _cap(message, MAX_MESSAGE_CHARS)
        self.retryable = retryable
        self.status_code = status_code
        super().__init__(self.message)


class CircuitOpen(DispatchFailed):
    """The endpoint failed too often lately; no call was made."""

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message, retryable=True)
        self.retry_after_seconds = retry_after_seconds


_Endpoint = tuple[str, str, int]


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float | None = None  # set once opened; stays set until an answer closes it
    trial_in_flight: bool = False


class WebhookDispatcher:
    """POSTs signed JSON to workflow URLs; one per process, shared by every job.

    The client should be dedicated to webhooks: its default headers, auth and cookies
    would otherwise reach tenants' servers (the Cookie header is dropped here regardless).
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        timeout_seconds: float = 10.0,
        max_response_bytes: int = 64 * 1024,
        failure_threshold: int = 5,
        open_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str = "BAI-Webhooks/1",
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._client = client
        self._allow_private, self._resolver = allow_private, resolver
        self._timeout = timeout_seconds
        self._max_bytes = max_response_bytes
        self._threshold = max(1, failure_threshold)
        self._open_seconds = open_seconds
        self._clock = clock
        self._user_agent = user_agent
        # Only endpoints that failed lately have an entry; bounded so a flood of tenant
        # URLs cannot grow memory without limit (the least recently used entry goes).
        self._breakers: LRUCache[_Endpoint, _Breaker] = LRUCache(maxsize=BREAKER_ENDPOINTS)

    async def dispatch(
        self,
        *,
        url: str,
        payload: Mapping[str, Any],
        secret: str,
        secret_header: bool = False,
        event_id: str | None = None,
    ) -> Delivered:
        if not secret:
            raise DispatchFailed("no signing secret is configured; not sending", retryable=False)
        # One deadline for the whole call: the name is the tenant's (its name server may
        # stall), and so is the server (it may drip).
        deadline = asyncio.get_running_loop().time() + self._timeout
        addresses = await self._addresses(url, deadline)
        target = _parse_url(url)
        endpoint = _endpoint(target)
        trial = self._admit(endpoint, target)
        try:
            delivered = await self._deliver(
                target, addresses, payload, secret, secret_header, event_id, deadline
            )
        except DispatchFailed as failure:
            self._record(endpoint, failed=failure.retryable)
            raise
        finally:
            self._end_trial(endpoint, trial)
        self._record(endpoint, failed=False)
        return delivered

    async def _addresses(self, url: str, deadline: float) -> list[IPAddress]:
        try:
            async with asyncio.timeout_at(deadline):
                return await checked_addresses(
                    url, allow_private=self._allow_private, resolver=self._resolver
                )
        except TimeoutError:
            raise DispatchFailed(
                f"the workflow's name was not resolved within {self._timeout:g} s",
                retryable=True,
            ) from None
        except DestinationRefused as refused:
            transient = isinstance(refused, NameNotResolved) and refused.transient
            raise DispatchFailed(str(refused), retryable=transient) from refused

    async def _deliver(
        self,
        target: httpx.URL,
        addresses: list[IPAddress],
        payload: Mapping[str, Any],
        secret: str,
        secret_header: bool,
        event_id: str | None,
        deadline: float,
    ) -> Delivered:
        content, headers = self._signed(payload, secret, secret_header, event_id)
        try:
            # httpx times each read separately; this bounds the whole exchange, so a server
            # dripping bytes cannot hold a worker for longer than timeout_seconds.
            async with asyncio.timeout_at(deadline):
                status, body, location = await self._exchange(target, addresses, content, headers)
        except (TimeoutError, httpx.TimeoutException):
            raise _unreachable(target, f"no answer within {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise _unreachable(target, _scrub(_describe(exc), target)) from None
        return _outcome(target, status, body, location)

    def _signed(
        self,
        payload: Mapping[str, Any],
        secret: str,
        secret_header: bool,
        event_id: str | None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and its headers, signed once whichever address takes them."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        content = body.encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-BAI-Timestamp": str(timestamp),
            "X-BAI-Signature": sign(secret, timestamp, content),
            "User-Agent": self._user_agent,
            # We read raw bytes: asking for no compression keeps the cap meaningful
            # (a small compressed body may inflate enormously).
            "Accept-Encoding": "identity",
        }
        if event_id is not None:
            headers["X-BAI-Event-Id"] = event_id
        if secret_header:
            headers["X-BAI-Secret"] = secret
        return content, headers

    async def _exchange(
        self,
        target: httpx.URL,
        addresses: list[IPAddress],
        content: bytes,
        headers: dict[str, str],
    ) -> tuple[int, bytes, str | None]:
        # One client serves every tenant: send_pinned keeps its cookies and credentials out.
        response = await send_pinned(
            self._client,
            "POST",
            target,
            addresses,
            headers=headers,
            read_timeout=self._timeout,
            content=content,
        )
        try:
            body = await _read_capped(response, self._max_bytes)
        finally:
            await response.aclose()
        return response.status_code, body, response.headers.get("Location")

    def _admit(self, endpoint: _Endpoint, target: httpx.URL) -> bool:
        """Whether this call is the half-open trial; raises CircuitOpen when it may not go."""
        breaker = self._breakers.get(endpoint)
        if breaker is None or breaker.open_until is None:
            return False
        remaining = breaker.open_until - self._clock()
        if remaining > 0 or breaker.trial_in_flight:
            raise CircuitOpen(
                f"{_origin(target)} failed {breaker.failures} times in a row; "
                f"calls to it are paused for {max(remaining, 0.0):.0f} s",
                retry_after_seconds=max(remaining, 0.0),
            )
        breaker.trial_in_flight = True
        return True

    def _record(self, endpoint: _Endpoint, *, failed: bool) -> None:
        if not failed:
            self._breakers.pop(endpoint, None)  # any answer proves the endpoint alive
            return
        breaker = self._breakers.setdefault(endpoint, _Breaker())
        breaker.failures += 1
        if breaker.open_until is not None or breaker.failures >= self._threshold:
            breaker.open_until = self._clock() + self._open_seconds

    def _end_trial(self, endpoint: _Endpoint, trial: bool) -> None:
        # Also on cancellation: otherwise the endpoint would stay shut for good.
        breaker = self._breakers.get(endpoint)
        if trial and breaker is not None:
            breaker.trial_in_flight = False


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of the body; the rest is never read."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk[: max_bytes - len(body)]
        if len(body) >= max_bytes:
            break
    return bytes(body)


def _outcome(target: httpx.URL, status: int, body: bytes, location: str | None) -> Delivered:
    if 200 <= status < 300:
        return Delivered(status_code=status, body=body)
    if 300 <= status < 400:
        where = _redirect_target(target, location)
        raise DispatchFailed(
            f"the workflow answered with a redirect to {where}; use the final URL",
            retryable=False,
            status_code=status,
        )
    retryable = status in RETRYABLE_STATUSES or status >= 500
    detail = _detail(body)
    message = f"n8n answered {status}: {detail}" if detail else f"n8n answered {status}"
    raise DispatchFailed(message, retryable=retryable, status_code=status)


def _detail(body: bytes) -> str:
    """What the workflow said: its JSON ``message``/``error`` if any, else the text."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("message", "error"):
            if isinstance(parsed.get(key), str) and parsed[key].strip():
                text = parsed[key]
                break
    return _cap(" ".join(text.split()), MAX_DETAIL_CHARS)


def _redirect_target(target: httpx.URL, location: str | None) -> str:
    if not location:
        return "nowhere (no Location header)"
    try:
        joined = target.join(location)
    except httpx.InvalidURL:
        return "an invalid URL"
    # Scheme, host and path only: a query or userinfo may carry a token.
    return _cap(f"{_origin(joined)}{joined.path}", 200)


def _parse_url(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        target = None
    if target is None or target.scheme not in ("http", "https") or not target.host:
        raise DispatchFailed("the workflow URL is not a valid http(s) URL", retryable=False)
    return target


def _endpoint(target: httpx.URL) -> _Endpoint:
    port = target.port or (443 if target.scheme == "https" else 80)
    return (target.scheme, target.host, port)


def _origin(target: httpx.URL) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    port = f":{target.port}" if target.port is not None else ""
    return f"{target.scheme}://{host}{port}"


def _unreachable(target: httpx.URL, reason: str) -> DispatchFailed:
    return DispatchFailed(f"could not reach {_origin(target)}: {reason}", retryable=True)


def _describe(exc: httpx.TransportError) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _scrub(reason: str, target: httpx.URL) -> str:
    """The reason without anything of the URL that may be secret (transport texts vary)."""
    secrets = (str(target), target.query.decode(), target.userinfo.decode(), target.password)
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "…")
    return _cap(reason, MAX_DETAIL_CHARS)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
