"""GET a URL someone else gave us without it reaching our own network (OWASP API7, SSRF).

For the mining crawler (pages of tenants' target sites) and, later, webhook dispatch.

Rules, applied to the URL asked for and again to every redirect:

- Only ``http`` and ``https``, with a host; any port. A URL with userinfo (``user:pw@``) is
  refused: it is a credential leak or an attempt to confuse a parser.
- The host is resolved once, with the ``resolver`` (a literal address is taken as it is,
  in any spelling ``literal_address`` reads: ``2130706433``, ``0x7f.1``, ``[::1]``...).
  Every address must be public (``is_public``) unless ``allow_private``, or the host is
  one of ``allowed_hosts``; otherwise ``FetchRefused``, whose message names the host and
  never the URL's path, query or credentials.
- The connection goes to an address that was checked, never to a second resolution (no
  DNS rebinding): the request is sent to the URL with its host replaced by that address
  (IPv6 in brackets), with ``Host: <host[:port]>`` as written, and for https the name is
  given to TLS for SNI and the certificate check (httpcore's ``sni_hostname`` request
  extension). When the name has several addresses they are tried in order on connect
  errors. An https connection is closed after its one exchange (``Connection: close``):
  httpcore pools connections by address, and a connection whose certificate was checked
  for one name must not carry a request for another name on the same address.
- Redirects (301, 302, 303, 307, 308 with a ``Location``) are followed here, never by
  the client: the target is resolved against the current URL and checked like the first
  URL; always with GET and no body. More than ``max_redirects`` hops is ``FetchFailed``.
- The whole exchange, every hop and every resolution included, fits in
  ``timeout_seconds``. The body is read as a stream and cut at ``max_bytes``
  (``truncated``; the rest is never read and the connection is dropped). We ask for no
  compression; a server that compresses anyway with gzip or deflate is decoded with the
  same cap on the decoded size (no decompression bombs), any other coding is refused.
- A 2xx must have a content type starting with one of ``content_types`` (checked before
  the body is read), else ``FetchFailed`` ("unsupported content type"). A 4xx or 5xx is
  returned as ``Fetched``: what to do with it is the caller's choice.
- ``FetchFailed.retryable``: true for timeouts, connection and transport errors and
  temporary resolution failures; false for too many redirects, unsupported content type
  or coding, and names that do not exist.

``allowed_hosts`` is an escape hatch for tests and operators: hosts, exactly as the URL
spells them (lower case, IPv6 without brackets), that are trusted like public ones, e.g.
an internal fixture site. They are still resolved once and pinned. A name that resolves
to an allowed address is not itself allowed.

The client should be dedicated to fetching, without proxies (``trust_env=False``; an
https tunnel through a proxy would not get the SNI name) and without HTTP/2 (the
per-name connection rule above relies on HTTP/1.1). Its auth is not used, and its
``Cookie`` and ``Authorization`` headers are dropped, so nothing of ours reaches the sites.
"""

import asyncio
import ipaddress
import re
import socket
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bai_platform.destinations import (
    NO_SUCH_NAME,
    IPAddress,
    Resolver,
    is_public,
    literal_address,
    send_pinned,
    system_resolver,
    without_credentials,
)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REASON_CHARS = 300
# ASCII digits only (str.isdigit() also takes "²", which float() refuses), and few of them.
RETRY_AFTER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # the final URL after redirects (with the host as the URL named it)
    status: int
    content_type: str | None
    body: bytes  # at most max_bytes
    truncated: bool  # the body was cut at max_bytes
    redirects: tuple[str, ...]  # the URLs that answered with a redirect, in order
    # Seconds the server asked us to wait (``Retry-After`` in seconds on a 429 or 503).
    retry_after: float | None = None


class FetchRefused(Exception):
    """The URL, or a redirect, may not be fetched; the message is safe to show.

    ``url`` is the URL refused (the redirect target for a redirect), credentials masked.
    """

    def __init__(self, message: str, *, url: str) -> None:
        self.message = message
        self.url = url
        super().__init__(message)


class FetchFailed(Exception):
    """The fetch did not succeed; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.message = message
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx.URL
    host: str  # as httpx parsed it: lower case, IDNA decoded, IPv6 without brackets
    ascii_host: str  # what DNS, SNI and the Host header get
    port: int
    shown: str  # scheme://host[:port], for messages


class SafeFetcher:
    """Fetches pages under the rules above; one per process is enough (it keeps no state)."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
        max_bytes: int = 2 * 1024 * 1024,
        timeout_seconds: float = 15.0,
        max_redirects: int = 5,
        content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml", "text/plain"),
        user_agent: str = "BAI-Mining/1 (+https://bai.dev/bot)",
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        if max_bytes < 0 or max_redirects < 0 or timeout_seconds <= 0:
            raise ValueError("max_bytes and max_redirects must be >= 0, timeout_seconds > 0")
        self._client = client
        self._allow_private = allow_private
        self._resolver = resolver
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._max_redirects = max_redirects
        self._content_types = tuple(t.strip().lower() for t in content_types)
        self._user_agent = user_agent
        self._allowed_hosts = frozenset(h.strip().strip("[]").lower() for h in allowed_hosts)

    async def fetch(self, url: str) -> Fetched:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url)
        except TimeoutError:
            raise FetchFailed(
                f"no complete answer within {self._timeout:g} s", retryable=True
            ) from None

    async def _follow(self, url: str) -> Fetched:
        redirects: list[str] = []
        current = url
        while True:
            hop = len(redirects)
            target = _parse(current, redirect=hop > 0)
            addresses = await self._addresses(target, redirect=hop > 0)
            try:
                response = await self._send(target, addresses)
                try:
                    location = response.headers.get("Location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        if hop >= self._max_redirects:
                            raise FetchFailed(
                                f"more than {self._max_redirects} redirects", retryable=False
                            )
                        redirects.append(str(target.url))
                        current = _join(target, location)
                        continue
                    return await self._answer(target, response, tuple(redirects))
                finally:
                    await response.aclose()
            except httpx.TimeoutException:
                raise FetchFailed(
                    f"no answer from {target.shown} within {self._timeout:g} s", retryable=True
                ) from None
            except httpx.TransportError as exc:
                raise FetchFailed(
                    f"could not fetch from {target.shown}: {_describe(exc, target)}",
                    retryable=True,
                ) from None

    async def _addresses(self, target: _Target, *, redirect: bool) -> list[IPAddress]:
        """The addresses to connect to, every one of them checked."""
        literal = literal_address(target.host)
        if literal is not None:
            addresses = [literal]
        else:
            addresses = await self._resolve(target)
        trusted = self._allow_private or target.host in self._allowed_hosts
        if not trusted and not all(is_public(a) for a in addresses):
            where = "a redirect to " if redirect else ""
            raise FetchRefused(
                f"{where}{_bracketed(target.host)} is a private, loopback or otherwise "
                "internal address; such destinations are refused",
                url=_masked(str(target.url)),
            )
        return addresses

    async def _resolve(self, target: _Target) -> list[IPAddress]:
        try:
            raw = await self._resolver(target.ascii_host, target.port)
        except OSError as exc:
            missing = isinstance(exc, socket.gaierror) and exc.errno in NO_SUCH_NAME
            raise FetchFailed(f"{target.host} cannot be resolved", retryable=not missing) from None
        addresses: list[IPAddress] = []
        for value in raw:
            # A zone (fe80::1%eth0) only comes with link-local addresses, never public.
            address = ipaddress.ip_address(value.split("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise FetchFailed(f"{target.host} cannot be resolved", retryable=False)
        return addresses

    async def _send(self, target: _Target, addresses: Sequence[IPAddress]) -> httpx.Response:
        """The response (open, body unread) from the first address that takes the connection."""
        headers = {
            "User-Agent": self._user_agent,
            "Accept": ", ".join(self._content_types) + ", */*;q=0.1",
            # The cap is on what we hold in memory: ask for the body as it is.
            "Accept-Encoding": "identity",
        }
        return await send_pinned(
            self._client,
            "GET",
            target.url.copy_with(fragment=None),
            list(addresses),
            headers=headers,
            read_timeout=self._timeout,
        )

    async def _answer(
        self, target: _Target, response: httpx.Response, redirects: tuple[str, ...]
    ) -> Fetched:
        content_type = response.headers.get("Content-Type")
        if 200 <= response.status_code < 300 and not self._acceptable(content_type):
            shown = (content_type or "none").split(";")[0].strip()[:100]
            raise FetchFailed(
                f"unsupported content type {shown!r} from {target.shown}", retryable=False
            )
        body, truncated = await _read_capped(response, self._max_bytes, target)
        return Fetched(
            url=str(target.url),
            status=response.status_code,
            content_type=content_type,
            body=body,
            truncated=truncated,
            redirects=redirects,
            retry_after=_retry_after(response),
        )

    def _acceptable(self, content_type: str | None) -> bool:
        value = (content_type or "").strip().lower()
        return bool(value) and value.startswith(self._content_types)


def _parse(url: str, *, redirect: bool) -> _Target:
    where = "a redirect to " if redirect else ""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise FetchRefused(f"{where}an invalid URL is refused", url=_masked(url)) from None
    shown = _masked(str(parsed))
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchRefused(f"{where}a URL that is not http(s) with a host is refused", url=shown)
    if parsed.userinfo:
        raise FetchRefused(
            f"{where}a URL with credentials (user@host) for {_bracketed(parsed.host)} is refused",
            url=shown,
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    origin = f"{parsed.scheme}://{_bracketed(parsed.host)}"
    if parsed.port is not None:
        origin += f":{parsed.port}"
    return _Target(
        url=parsed.copy_with(fragment=None),
        host=parsed.host,
        ascii_host=parsed.raw_host.decode("ascii"),
        port=port,
        shown=origin,
    )


def _join(target: _Target, location: str) -> str:
    try:
        return str(target.url.join(location.strip()))
    except httpx.InvalidURL:
        return location  # _parse refuses it with a proper message


async def _read_capped(
    response: httpx.Response, max_bytes: int, target: _Target
) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of the (decoded) body, and whether there was more."""
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    decoder: zlib._Decompress | None = None
    if coding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib header
    elif coding not in ("", "identity"):
        raise FetchFailed(
            f"unsupported content coding {coding[:50]!r} from {target.shown}", retryable=False
        )
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            room = max_bytes - len(body)
            # One byte past the room tells "more" from "exactly the cap".
            data = chunk if decoder is None else decoder.decompress(chunk, room + 1)
            if len(data) > room:
                body += data[:room]
                return bytes(body), True
            body += data
        if decoder is not None:
            rest = decoder.flush()
            room = max_bytes - len(body)
            body += rest[:room]
            return bytes(body), len(rest) > room
    except zlib.error:
        raise FetchFailed(
            f"the {coding} body from {target.shown} could not be decoded", retryable=False
        ) from None
    return bytes(body), False


def _masked(url: str) -> str:
    try:
        return without_credentials(url)[:2000]
    except ValueError:  # urlsplit disagrees with httpx: keep nothing that may be secret
        return ""


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _describe(exc: httpx.TransportError, target: _Target) -> str:
    """The transport's reason, without anything of the URL that may be secret."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    for secret in (str(target.url), target.url.query.decode()):
        if secret:
            reason = reason.replace(secret, "…")
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by crawl targets we see)."""
    value = response.headers.get("Retry-After", "").strip()
    if response.status_code not in (429, 503) or not RETRY_AFTER.fullmatch(value):
        return None
    return float(value)
