"""Where tenant-given URLs may point (OWASP API7, server-side request forgery).

Tenants give us URLs we call: their n8n workflows, their engines. Without a check, a
tenant could make our workers call our own services, the cloud's metadata endpoint or
anything else on the private network. A destination is refused when its host is, or
resolves to, a loopback, private, link-local, shared, multicast, reserved or unspecified
address (IPv4, IPv6, and IPv6 that carries an IPv4 address: mapped, translated, NAT64,
6to4 are as public as the IPv4 address they carry; Teredo, NAT64 local-use and the
deprecated IPv4-compatible form are refused outright), however the address is written: dotted,
decimal (``2130706433``), octal (``0177.0.0.1``), hex (``0x7f000001``) or short
(``127.1``). Every address a name resolves to must be public.

A deployment whose workflows live on its own network (n8n in the same cluster, or on
the same machine in development) allows private destinations explicitly with the
``BAI_ALLOW_PRIVATE_DESTINATIONS`` setting.

The check runs when a URL is saved and again before every call (names can be re-pointed);
callers then connect to the addresses that were checked (``checked_addresses``), never to
a fresh resolution of the name.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class DestinationRefused(ValueError):
    """The URL may not be called; the reason is safe to show the tenant."""


class NameNotResolved(DestinationRefused):
    """The host has no address now; ``transient`` when asking again later may help (the
    resolver failed, rather than saying the name does not exist)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# getaddrinfo's "this name does not exist" answers; any other failure may pass.
NO_SUCH_NAME = frozenset(
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells in any accepted notation, or None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        # inet_aton reads decimal, octal, hex and short forms the way HTTP clients do.
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


# IPv6 forms that carry an IPv4 address a gateway, relay or dual-stack socket delivers to:
# they are as public as the IPv4 address they carry (Python 3.11's ``is_global`` says True
# for most of them whatever that address is). ``ipv4_mapped`` and ``sixtofour`` are
# Python's own readings; these are the others, each with a /96 prefix.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
# Refused whatever they carry: Teredo tunnels through a server and a NAT we cannot see
# (its client address is obfuscated, and the tunnel is long obsolete); NAT64 local-use
# prefixes are the operator's own network (RFC 8215); IPv4-compatible addresses have been
# deprecated since 2006 (RFC 4291) and no public host needs them.
NEVER_PUBLIC_V6 = (
    ipaddress.IPv6Network("2001::/32"),  # Teredo, RFC 4380
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64 local use, RFC 8215
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible, and :: and ::1
)


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet, and so is what it carries."""
    if isinstance(address, ipaddress.IPv4Address):
        return address.is_global and not address.is_multicast
    if any(address in network for network in NEVER_PUBLIC_V6):
        return False
    carried = embedded_ipv4(address)
    if carried is not None:
        return is_public(carried)
    # Reserved is IANA's unassigned space: nothing public lives there yet.
    return address.is_global and not address.is_multicast and not address.is_reserved


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, translated, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_WELL_KNOWN or address in IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def check_destination(
    url: str, *, allow_private: bool = False, resolver: Resolver = system_resolver
) -> None:
    """Refuse ``url`` unless it is http(s) to a host whose every address is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("the URL must be http or https with a host")
    if allow_private:
        return
    await checked_addresses(url, allow_private=False, resolver=resolver)


async def checked_addresses(
    url: str, *, allow_private: bool = False, resolver: Resolver = system_resolver
) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to, every one public unless ``allow_private``:
    what a caller connects to (and only to), so the name cannot be re-pointed between the
    check and the call (DNS rebinding)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("the URL must be http or https with a host")
    host = parts.hostname
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            raw = await resolver(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as exc:
            missing = isinstance(exc, socket.gaierror) and exc.errno in NO_SUCH_NAME
            raise NameNotResolved(f"{host} cannot be resolved", transient=not missing) from exc
        addresses = []
        for value in raw:
            address = ipaddress.ip_address(value.split("%")[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise NameNotResolved(f"{host} cannot be resolved", transient=False)
    if not allow_private:
        for address in addresses:
            _require_public(address, host)
    return addresses


def _require_public(address: IPAddress, host: str) -> None:
    if not is_public(address):
        raise DestinationRefused(
            f"{host} is a private, loopback or otherwise internal address; "
            "such destinations are refused"
        )


def without_credentials(url: str) -> str:
    """``url`` as it may be shown: credentials in it (``user:pass@``) are masked."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def pinned_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    address: IPAddress,
    *,
    headers: dict[str, str],
    timeout: float,
    content: bytes | None = None,
) -> httpx.Request:
    """A request for ``url`` that connects to ``address`` (one ``checked_addresses`` gave):
    ``Host`` is the URL's, and for HTTPS the TLS server name too, so the certificate is
    still checked for the name; ``Connection: close`` keeps a connection verified for one
    name from serving another on the same address."""
    headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions: dict[str, str] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
        headers["Connection"] = "close"
    return client.build_request(
        method,
        url.copy_with(host=str(address)),
        content=content,
        headers=headers,
        timeout=timeout,
        extensions=extensions,
    )


CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
# The client's own credentials never go to a tenant's server (one client serves them all).
PRIVATE_HEADERS = ("Cookie", "Authorization", "Proxy-Authorization")


async def send_pinned(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    addresses: list[IPAddress],
    *,
    headers: dict[str, str],
    read_timeout: float,
    content: bytes | None = None,
) -> httpx.Response:
    """The response (open, body unread: the caller closes it) from the first checked address
    that takes the connection, redirects not followed. Of the client's default headers, the
    credentials are dropped unless ``headers`` gives them. ``read_timeout`` is httpx's, per
    phase: a server sending a byte at a time never trips it, so callers bound the whole call,
    name resolution included, with one ``asyncio.timeout`` around it."""
    for index, address in enumerate(addresses):
        request = pinned_request(
            client, method, url, address, headers=headers, timeout=read_timeout, content=content
        )
        for name in PRIVATE_HEADERS:
            if name not in headers:
                request.headers.pop(name, None)
        try:
            return await client.send(request, stream=True, follow_redirects=False, auth=None)
        except CONNECT_ERRORS:
            if index == len(addresses) - 1:
                raise
    raise ValueError("no address to connect to")
