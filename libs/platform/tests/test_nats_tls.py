"""With ``BAI_NATS_TLS_CA_FILE`` a service reaches NATS only over TLS, to the right server.

A real nats-server runs with a ``tls`` block like the Kubernetes one (``handshake_first``),
its certificate signed by a CA made here. A client that trusts that CA connects and does a
round trip; one that trusts another CA, or that finds a server offering no TLS at all, is
refused: with the handshake first, nothing (its password included) is sent before the
server's certificate is checked.
"""

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.errors import Error as NatsError
from pydantic import SecretStr

from bai_platform.devstack.config import free_port
from bai_platform.messaging import NatsAuth, connect
from bai_platform.settings import ServiceSettings

PASSWORD = "s3cret-for-tests"


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, issuer: Issued | None, *, is_ca: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = issuer.key if issuer else key
    return Issued(key, builder.sign(signer, hashes.SHA256()))


def _write(path: Path, issued: Issued, *, with_key: bool = False) -> Path:
    path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    if with_key:
        key = issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.with_suffix(".key").write_bytes(key)
    return path


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    other_ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = _issue("bai-nats-ca", None, is_ca=True)
    server = _issue("nats", ca, is_ca=False)
    cert_file = _write(folder / "server.crt", server, with_key=True)
    return Pki(
        ca_file=_write(folder / "ca.crt", ca),
        other_ca_file=_write(folder / "other-ca.crt", _issue("someone", None, is_ca=True)),
        cert_file=cert_file,
        key_file=cert_file.with_suffix(".key"),
    )


def _nats_server(folder: Path, tls_block: str) -> Iterator[str]:
    port = free_port()
    config = folder / f"nats-{port}.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'authorization {{ users: [{{ user: "planner", password: "{PASSWORD}" }}] }}\n'
        f"{tls_block}\n"
    )
    binary = Path(sys.executable).parent / "nats-server"
    process = subprocess.Popen([str(binary), "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, process: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nats-server did not listen on {port} (exit code {process.poll()})")


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    block = (
        f'tls {{ cert_file: "{pki.cert_file}", key_file: "{pki.key_file}",'
        " handshake_first: true, timeout: 5 }"
    )
    yield from _nats_server(tmp_path_factory.mktemp("tls"), block)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _nats_server(tmp_path_factory.mktemp("plain"), "")


def _auth(ca_file: Path | None) -> NatsAuth:
    return NatsAuth("planner", SecretStr(PASSWORD), str(ca_file) if ca_file else None)


async def _round_trip(url: str, auth: NatsAuth) -> bytes:
    async def attempt() -> bytes:
        nc = await connect(url, name="tls-probe", auth=auth)
        try:
            sub = await nc.subscribe("tls.echo")
            await nc.publish("tls.echo", b"over tls")
            return (await sub.next_msg(timeout=5)).data
        finally:
            await nc.close()

    return await asyncio.wait_for(attempt(), timeout=15)


async def _refused(url: str, auth: NatsAuth) -> None:
    """One attempt with ``auth``'s options fails (``connect`` would retry for ever)."""
    once = {"allow_reconnect": False, "max_reconnect_attempts": 0, "connect_timeout": 3}
    with pytest.raises((OSError, NatsError)):
        await nats.connect(url, **once, **auth.options())
    # nats-py drops the StreamWriter of a failed TLS handshake without closing it (its
    # socket is already closing); collect it here, where its ResourceWarning is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def test_a_client_trusting_the_servers_ca_talks_over_tls(tls_server: str, pki: Pki) -> None:
    assert await _round_trip(tls_server, _auth(pki.ca_file)) == b"over tls"


async def test_a_client_trusting_another_ca_is_refused(tls_server: str, pki: Pki) -> None:
    await _refused(tls_server, _auth(pki.other_ca_file))


async def test_a_client_without_tls_cannot_reach_the_tls_server(tls_server: str) -> None:
    await _refused(tls_server, _auth(None))


async def test_a_server_offering_no_tls_is_refused(plain_server: str, pki: Pki) -> None:
    assert await _round_trip(plain_server, _auth(None)) == b"over tls"  # it does serve
    await _refused(plain_server, _auth(pki.ca_file))


def test_the_setting_turns_tls_on(pki: Pki) -> None:
    settings = ServiceSettings(
        service_name="planner", nats_password=SecretStr(PASSWORD), nats_tls_ca_file=str(pki.ca_file)
    )
    options = settings.nats_auth.options()
    assert options["tls_handshake_first"] is True
    assert options["tls"].verify_mode.name == "CERT_REQUIRED"
    assert "tls" not in ServiceSettings(service_name="planner").nats_auth.options()
