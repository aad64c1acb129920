"""The SSRF-safe fetcher against real local servers.

The servers are uvicorn on sockets this module binds on 127.0.0.1 (port 0), one plain and
one with TLS for a name (``fixture.test``) under a throwaway CA. They record every request
they get. Names are given addresses by fake resolvers; ``.example`` and ``.test`` names do
not resolve for real, so a request that reaches the server went to the address we checked.
"""

import asyncio
import contextlib
import datetime
import gzip
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bai_platform.safe_fetch import Fetched, FetchFailed, FetchRefused, SafeFetcher
from bai_platform.webhooks import DispatchFailed, WebhookDispatcher

BIG_BODY_BYTES = 5 * 1024 * 1024
PAGE = b"<html><body>hello</body></html>"
TLS_NAME = "fixture.test"


@dataclass
class Received:
    path: str
    headers: dict[str, str]


@dataclass
class Receiver:
    requests: list[Received] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C belongs to pytest, not to this in-test server


def _app(receiver: Receiver) -> Starlette:
    def record(request: Request) -> None:
        receiver.requests.append(Received(request.url.path, dict(request.headers)))

    async def page(request: Request) -> Response:
        record(request)
        return Response(PAGE, media_type="text/html")

    async def redirect(request: Request) -> Response:
        record(request)
        status = int(request.query_params.get("status", "302"))
        return Response(status_code=status, headers={"Location": request.query_params["to"]})

    async def loop(request: Request) -> Response:
        record(request)
        return Response(status_code=302, headers={"Location": "/loop"})

    async def chain(request: Request) -> Response:
        record(request)
        left = int(request.path_params["left"])
        location = f"/chain/{left - 1}" if left > 1 else "/page"
        return Response(status_code=301, headers={"Location": location})

    async def big(request: Request) -> Response:
        record(request)
        chunk = b"x" * 65536

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(BIG_BODY_BYTES // len(chunk)):
                yield chunk

        return StreamingResponse(chunks(), media_type="text/plain")

    async def forever(request: Request) -> Response:
        record(request)

        async def chunks() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + 60  # "forever", for a test
            while time.monotonic() < deadline:
                yield b"<p>" + b"y" * 1000 + b"</p>"
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks(), media_type="text/html")

    async def slow(request: Request) -> Response:
        record(request)
        await asyncio.sleep(float(request.query_params.get("seconds", "1")))
        return Response(PAGE, media_type="text/html")

    async def binary(request: Request) -> Response:
        record(request)
        return Response(b"\x00\x01\x02", media_type="application/octet-stream")

    async def untyped(request: Request) -> Response:
        record(request)
        return Response(PAGE)

    async def missing(request: Request) -> Response:
        record(request)
        return PlainTextResponse("no such page", status_code=404)

    async def compressed(request: Request) -> Response:
        record(request)
        size = int(request.query_params.get("size", "0"))
        body = gzip.compress(b"0" * size if size else PAGE)
        headers = {"Content-Encoding": "gzip"}  # whatever the client asked for
        return Response(body, media_type="text/html", headers=headers)

    async def limited(request: Request) -> Response:
        record(request)
        after = request.query_params["after"]  # Starlette sends header values as Latin-1
        return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": after})

    async def brotli(request: Request) -> Response:
        record(request)
        return Response(b"\x8b\x00\x80", media_type="text/html", headers={"Content-Encoding": "br"})

    routes = [
        Route("/page", page, methods=["GET", "POST"]),
        Route("/redirect", redirect),
        Route("/loop", loop),
        Route("/chain/{left:int}", chain),
        Route("/big", big),
        Route("/forever", forever),
        Route("/slow", slow),
        Route("/binary", binary),
        Route("/untyped", untyped),
        Route("/missing", missing),
        Route("/gzip", compressed),
        Route("/brotli", brotli),
        Route("/limited", limited),
    ]
    return Starlette(routes=routes)


@contextlib.asynccontextmanager
async def _serving(
    receiver: Receiver, *, certfile: str | None = None, keyfile: str | None = None
) -> AsyncIterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        _app(receiver),
        lifespan="off",
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    served = _Server(config)
    task = asyncio.create_task(served.serve(sockets=[sock]))
    while not served.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        served.should_exit = True
        await task
        sock.close()


@dataclass
class Site:
    port: int
    receiver: Receiver

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
async def plain_server() -> AsyncIterator[Site]:
    receiver = Receiver()
    async with _serving(receiver) as port:
        yield Site(port, receiver)


@pytest.fixture
def site(plain_server: Site) -> Site:
    plain_server.receiver.requests.clear()
    return plain_server


@dataclass
class TlsSite:
    port: int
    receiver: Receiver
    ca_file: Path


def _write_ca_and_leaf(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a certificate it signed for ``name``: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "safe-fetch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / f"{n}.pem" for n in ("ca", "cert", "key"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
async def tls_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsSite]:
    ca_file, cert_file, key_file = _write_ca_and_leaf(tmp_path_factory.mktemp("tls"), TLS_NAME)
    receiver = Receiver()
    async with _serving(receiver, certfile=str(cert_file), keyfile=str(key_file)) as port:
        yield TlsSite(port, receiver, ca_file)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@dataclass
class FakeResolver:
    """Answers names from a table and remembers what it was asked."""

    table: dict[str, list[str]]
    asked: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _local(client: httpx.AsyncClient, **kwargs: Any) -> SafeFetcher:
    """A fetcher that trusts the local fixture site (127.0.0.1) and nothing else private."""
    return SafeFetcher(client=client, allowed_hosts=frozenset({"127.0.0.1"}), **kwargs)


async def _refused(fetcher: SafeFetcher, url: str) -> FetchRefused:
    with pytest.raises(FetchRefused) as caught:
        await fetcher.fetch(url)
    return caught.value


async def _failed(fetcher: SafeFetcher, url: str) -> FetchFailed:
    with pytest.raises(FetchFailed) as caught:
        await fetcher.fetch(url)
    return caught.value


# --- the connection goes to the address that was checked --------------------------------


async def test_a_name_is_fetched_from_its_checked_address_with_its_own_host_header(
    site: Site, client: httpx.AsyncClient
) -> None:
    resolver = FakeResolver({"site.example": ["127.0.0.1"]})
    fetcher = SafeFetcher(client=client, allow_private=True, resolver=resolver)
    url = f"http://site.example:{site.port}/page?q=1"

    got = await fetcher.fetch(url)

    assert got == Fetched(
        url=url,
        status=200,
        content_type="text/html; charset=utf-8",
        body=PAGE,
        truncated=False,
        redirects=(),
    )
    # site.example has no real address: the request reached 127.0.0.1 only because we
    # connected to what the resolver said, once, and told the server the name.
    assert resolver.asked == [("site.example", site.port)]
    (seen,) = site.receiver.requests
    assert seen.headers["host"] == f"site.example:{site.port}"
    assert seen.headers["user-agent"] == "BAI-Mining/1 (+https://bai.dev/bot)"
    assert seen.headers["accept-encoding"] == "identity"


async def test_the_next_address_is_tried_when_one_refuses_the_connection(
    site: Site, client: httpx.AsyncClient
) -> None:
    # Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1 only).
    resolver = FakeResolver({"two.example": ["127.0.0.2", "127.0.0.1"]})
    fetcher = SafeFetcher(client=client, allow_private=True, resolver=resolver)
    got = await fetcher.fetch(f"http://two.example:{site.port}/page")
    assert got.body == PAGE
    assert resolver.asked == [("two.example", site.port)]


async def test_https_checks_the_names_certificate_on_the_pinned_address(
    tls_site: TlsSite,
) -> None:
    verify = ssl.create_default_context(cafile=str(tls_site.ca_file))
    resolver = FakeResolver({TLS_NAME: ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    async with httpx.AsyncClient(verify=verify, trust_env=False) as http:
        fetcher = SafeFetcher(client=http, allow_private=True, resolver=resolver)
        url = f"https://{TLS_NAME}:{tls_site.port}/page"

        got = await fetcher.fetch(url)
        assert (got.status, got.body, got.url) == (200, PAGE, url)
        assert tls_site.receiver.requests[-1].headers["host"] == f"{TLS_NAME}:{tls_site.port}"

        # The certificate is for fixture.test: another name on the same address fails its
        # check (no reuse of the connection verified for fixture.test), and so does the
        # bare address (the IP is only where we connect, never what TLS verifies)...
        for wrong in (
            f"https://other.test:{tls_site.port}/page",
            f"https://127.0.0.1:{tls_site.port}/page",
        ):
            failure = await _failed(fetcher, wrong)
            assert "certificate" in str(failure).lower()
        # ...while the right name still works afterwards.
        assert (await fetcher.fetch(url)).status == 200
    assert len(tls_site.receiver.requests) == 2


async def test_the_clients_own_credentials_never_reach_the_site(site: Site) -> None:
    async with httpx.AsyncClient(
        trust_env=False,
        headers={"Authorization": "Bearer ours"},
        cookies={"session": "ours"},
        auth=("svc", "pw"),
    ) as http:
        await _local(http).fetch(f"{site.base}/page")
    (seen,) = site.receiver.requests
    assert "authorization" not in seen.headers
    assert "cookie" not in seen.headers


# --- internal destinations are refused -------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",  # the real resolver
        "2130706433",  # 127.0.0.1 in decimal
        "0x7f.1",  # hex, short
        "0177.1",  # octal, short
        "[::1]",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",  # the cloud's metadata endpoint
        "10.0.0.1",
    ],
)
async def test_internal_addresses_are_refused_and_the_query_never_shown(
    site: Site, client: httpx.AsyncClient, host: str
) -> None:
    url = f"http://{host}:{site.port}/page?token=s3cret"
    refused = await _refused(SafeFetcher(client=client), url)
    assert "internal" in str(refused)
    assert host.strip("[]") in str(refused)
    assert "s3cret" not in str(refused)
    assert "/page" not in str(refused)
    assert refused.url == url
    assert site.receiver.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::5db8:d70e", False),  # NAT64 local use
        ("2002:a9fe:a9fe::1", False),  # 6to4 of the metadata endpoint
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("::a00:1", False),  # IPv4-compatible 10.0.0.1
        ("::ffff:0:7f00:1", False),  # IPv4-translated 127.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address: the positive control
    ],
)
async def test_ipv6_carrying_ipv4_is_judged_by_the_ipv4_address_it_carries(
    client: httpx.AsyncClient, address: str, public: bool
) -> None:
    resolver = FakeResolver({"carried.example": [address]})
    fetcher = SafeFetcher(client=client, resolver=resolver, timeout_seconds=2)
    for url in ("http://carried.example/", f"http://[{address}]/"):
        if public:  # let through (FetchRefused would fail the test); whether it answers
            with contextlib.suppress(FetchFailed):  # depends on this machine's network
                await fetcher.fetch(url)
        else:
            assert "internal" in str(await _refused(fetcher, url))


async def test_a_dotted_octal_address_is_refused_as_invalid(client: httpx.AsyncClient) -> None:
    # httpx's parser rejects it outright (leading zeros), before any check of ours.
    refused = await _refused(SafeFetcher(client=client), "http://0177.0.0.1/?token=s3cret")
    assert "s3cret" not in str(refused)


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    client: httpx.AsyncClient,
) -> None:
    resolver = FakeResolver(
        {"mixed.example": ["93.184.215.14", "10.0.0.7", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]}
    )
    refused = await _refused(
        SafeFetcher(client=client, resolver=resolver), "https://mixed.example/a?key=s3cret"
    )
    assert str(refused).startswith("mixed.example is a private")
    assert "s3cret" not in str(refused)


async def test_the_resolvers_answer_is_what_counts_not_the_name(client: httpx.AsyncClient) -> None:
    # A public-looking name pointed at the metadata endpoint (the rebinding set-up).
    resolver = FakeResolver({"innocent.example": ["169.254.169.254"]})
    await _refused(SafeFetcher(client=client, resolver=resolver), "http://innocent.example/")


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw-s3cret@example.com/",
        "http://user@example.com/",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http:///nohost",
        "not a url",
    ],
)
async def test_what_is_not_plain_http_or_https_is_refused(
    client: httpx.AsyncClient, url: str
) -> None:
    resolver = FakeResolver({"example.com": ["93.184.215.14"]})
    refused = await _refused(SafeFetcher(client=client, resolver=resolver), url)
    assert "s3cret" not in str(refused)
    assert "s3cret" not in refused.url
    assert resolver.asked == []


async def test_allow_private_lets_internal_addresses_through(
    site: Site, client: httpx.AsyncClient
) -> None:
    got = await SafeFetcher(client=client, allow_private=True).fetch(f"{site.base}/page")
    assert got.body == PAGE


# --- redirects ---------------------------------------------------------------------------


async def test_a_redirect_on_the_trusted_site_is_followed_and_recorded(
    site: Site, client: httpx.AsyncClient
) -> None:
    start = f"{site.base}/redirect?to=/page%3Fafter%3D1&status=307"
    got = await _local(client).fetch(start)
    assert got.url == f"{site.base}/page?after=1"
    assert got.redirects == (start,)
    assert got.body == PAGE
    assert site.receiver.paths() == ["/redirect", "/page"]


@pytest.mark.parametrize(
    "to",
    [
        "http://10.0.0.1/",
        "http://localhost:{port}/page",
        "http://[::1]:{port}/page",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433:{port}/page",
        "http://user:pw@127.0.0.1:{port}/page",
        "ftp://127.0.0.1/",
    ],
)
async def test_a_redirect_to_an_internal_or_odd_place_is_refused(
    site: Site, client: httpx.AsyncClient, to: str
) -> None:
    target = to.format(port=site.port)
    refused = await _refused(_local(client), f"{site.base}/redirect?to={target}")
    assert str(refused).startswith("a redirect to ")
    assert site.receiver.paths() == ["/redirect"]


async def test_a_redirect_to_a_name_is_checked_against_its_resolution(
    site: Site, client: httpx.AsyncClient
) -> None:
    resolver = FakeResolver({"rebound.example": ["127.0.0.1"]})
    fetcher = _local(client, resolver=resolver)
    refused = await _refused(
        fetcher, f"{site.base}/redirect?to=http://rebound.example:{site.port}/page"
    )
    assert "rebound.example" in str(refused)
    assert refused.url == f"http://rebound.example:{site.port}/page"
    assert resolver.asked == [("rebound.example", site.port)]


async def test_a_redirect_loop_fails_for_good(site: Site, client: httpx.AsyncClient) -> None:
    failure = await _failed(_local(client, max_redirects=3), f"{site.base}/loop")
    assert not failure.retryable
    assert "more than 3 redirects" in str(failure)
    assert site.receiver.paths() == ["/loop"] * 4


async def test_exactly_max_redirects_hops_are_followed(
    site: Site, client: httpx.AsyncClient
) -> None:
    got = await _local(client, max_redirects=3).fetch(f"{site.base}/chain/3")
    assert got.body == PAGE
    assert got.redirects == tuple(f"{site.base}/chain/{n}" for n in (3, 2, 1))
    assert not (await _failed(_local(client, max_redirects=3), f"{site.base}/chain/4")).retryable


async def test_a_redirect_without_location_is_the_answer(
    site: Site, client: httpx.AsyncClient
) -> None:
    got = await _local(client).fetch(f"{site.base}/redirect?to=&status=302")
    assert got.status == 302
    assert got.redirects == ()


# --- caps --------------------------------------------------------------------------------


async def test_a_huge_body_is_cut_at_the_cap(site: Site, client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    got = await _local(client).fetch(f"{site.base}/big")
    assert len(got.body) == 2 * 1024 * 1024
    assert got.truncated
    small = await _local(client, max_bytes=1000).fetch(f"{site.base}/big")
    assert (small.body, small.truncated) == (b"x" * 1000, True)
    assert time.monotonic() - started < 5


async def test_a_body_exactly_at_the_cap_is_not_truncated(
    site: Site, client: httpx.AsyncClient
) -> None:
    got = await _local(client, max_bytes=len(PAGE)).fetch(f"{site.base}/page")
    assert (got.body, got.truncated) == (PAGE, False)


async def test_a_page_that_never_ends_stops_at_the_cap(
    site: Site, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    got = await _local(client, max_bytes=20_000, timeout_seconds=10).fetch(f"{site.base}/forever")
    assert (len(got.body), got.truncated) == (20_000, True)
    assert time.monotonic() - started < 3


async def test_a_page_that_never_ends_stops_at_the_timeout(
    site: Site, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    failure = await _failed(_local(client, timeout_seconds=0.5), f"{site.base}/forever")
    assert failure.retryable
    assert time.monotonic() - started < 1.5


async def test_a_page_dripping_a_byte_at_a_time_stops_at_the_timeout(
    dripping: str, client: httpx.AsyncClient
) -> None:
    # Every byte comes well within any per-read timeout; only the overall cap ends it.
    async with asyncio.timeout(20):  # a failure of the test, not a hang
        failure = await _failed(_local(client, timeout_seconds=1), dripping)
    assert failure.retryable
    assert "within 1 s" in str(failure)


async def test_a_slow_server_fails_retryably(site: Site, client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    failure = await _failed(
        _local(client, timeout_seconds=0.3), f"{site.base}/slow?seconds=2&token=s3cret"
    )
    assert failure.retryable
    assert time.monotonic() - started < 1
    assert "s3cret" not in str(failure)


async def test_a_refused_connection_fails_retryably_without_the_query(
    client: httpx.AsyncClient,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/page?token=s3cret"
    failure = await _failed(_local(client), url)
    assert failure.retryable
    assert "s3cret" not in str(failure)


async def test_a_name_that_does_not_exist_fails_for_good(client: httpx.AsyncClient) -> None:
    fetcher = SafeFetcher(client=client, resolver=FakeResolver({}))
    failure = await _failed(fetcher, "http://nowhere.example/")
    assert not failure.retryable
    assert "nowhere.example cannot be resolved" in str(failure)


# --- what comes back ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/binary", "/untyped"])
async def test_a_body_of_another_content_type_fails_for_good(
    site: Site, client: httpx.AsyncClient, path: str
) -> None:
    failure = await _failed(_local(client), f"{site.base}{path}")
    assert not failure.retryable
    assert "unsupported content type" in str(failure)


async def test_other_content_types_can_be_accepted(site: Site, client: httpx.AsyncClient) -> None:
    fetcher = _local(client, content_types=("application/octet-stream",))
    got = await fetcher.fetch(f"{site.base}/binary")
    assert got.body == b"\x00\x01\x02"


async def test_a_404_is_an_answer_not_an_error(site: Site, client: httpx.AsyncClient) -> None:
    got = await _local(client).fetch(f"{site.base}/missing")
    assert (got.status, got.body) == (404, b"no such page")
    assert got.content_type is not None
    assert got.content_type.startswith("text/plain")


@pytest.mark.parametrize(
    ("after", "seconds"),
    [
        ("30", 30.0),
        ("²", None),  # str.isdigit() says yes, float() says no
        ("3²", None),
        ("9" * 5000, None),  # not a wait anyone means
        ("-1", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
async def test_only_a_plain_number_of_seconds_is_read_from_retry_after(
    site: Site, client: httpx.AsyncClient, after: str, seconds: float | None
) -> None:
    got = await _local(client).fetch(f"{site.base}/limited?after={after}")
    assert (got.status, got.retry_after) == (429, seconds)


async def test_a_body_compressed_anyway_is_decoded_under_the_cap(
    site: Site, client: httpx.AsyncClient
) -> None:
    got = await _local(client).fetch(f"{site.base}/gzip")
    assert (got.body, got.truncated) == (PAGE, False)
    # 50 MB of zeros are ~50 kB compressed: only max_bytes of them are ever inflated.
    bomb = await _local(client, max_bytes=4096).fetch(f"{site.base}/gzip?size=50000000")
    assert (bomb.body, bomb.truncated) == (b"0" * 4096, True)


async def test_an_unknown_content_coding_fails_for_good(
    site: Site, client: httpx.AsyncClient
) -> None:
    failure = await _failed(_local(client), f"{site.base}/brotli")
    assert not failure.retryable
    assert "content coding" in str(failure)


async def test_the_webhook_dispatcher_pins_https_the_same_way(tls_site: TlsSite) -> None:
    # The dispatcher connects to the checked address too; TLS is still verified for the
    # name (SNI and certificate), and another name on the same address is refused.
    verify = ssl.create_default_context(cafile=str(tls_site.ca_file))
    resolver = FakeResolver({TLS_NAME: ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    async with httpx.AsyncClient(verify=verify, trust_env=False) as http:
        dispatcher = WebhookDispatcher(client=http, allow_private=True, resolver=resolver)
        sent = await dispatcher.dispatch(
            url=f"https://{TLS_NAME}:{tls_site.port}/page", payload={"job": 1}, secret="s" * 16
        )
        assert sent.status_code == 200
        assert tls_site.receiver.requests[-1].headers["host"] == f"{TLS_NAME}:{tls_site.port}"
        with pytest.raises(DispatchFailed) as wrong:
            await dispatcher.dispatch(
                url=f"https://other.test:{tls_site.port}/page", payload={}, secret="s" * 16
            )
        assert "certificate" in str(wrong.value).lower()
