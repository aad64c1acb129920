"""Test helpers: the session's local stack, clients for it, and trusted test identities.

The test session starts the same processes ``make run`` does, from the same binaries, on
free ports and in a temporary state folder, and stops them at the end. Fixtures start
only what a test needs: ``infra`` (PostgreSQL and NATS), ``migrated`` (plus every
schema), ``system`` (everything, behind Traefik).

Tests that use ``system`` run after every other test of the session, whatever order they
were collected or shuffled in: once the services' workers run, they work on the shared
database, and a unit test that drives a service's jobs by hand must not race them.
"""

import base64
import json
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from pydantic import SecretStr

from bai_platform.app_state import platform_of
from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.config import reachable_state_dir
from bai_platform.devstack.containers import container_servers, engine_unavailable_reason
from bai_platform.identity import IDENTITY_HEADER, mint_identity
from bai_platform.settings import Environment, ServiceSettings

INFRA = ("postgres", "nats")

# The log folder of the session's stack once it exists, so that a failing test shows what
# the services warned about while it ran (a 503 in a test is a lock or a pool somewhere).
_session_logs: list[Path] = []
_LOG_OFFSETS = pytest.StashKey[dict[Path, int]]()
_WORRYING_LEVELS = frozenset({"warning", "warn", "error", "critical", "fatal", "exception"})
_WORRYING_WORDS = ("ERROR:", "FATAL:", "PANIC:", "DETAIL:", "[ERR]", "[WRN]", "[FTL]")
_MOST_LINES, _LINE_CHARS = 80, 600


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    if _session_logs:
        item.stash[_LOG_OFFSETS] = {
            path: path.stat().st_size for path in _session_logs[0].glob("*.log")
        }
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    offsets = item.stash.get(_LOG_OFFSETS, None)
    if report.when == "call" and report.failed and offsets is not None and _session_logs:
        lines = _worrying_lines(_session_logs[0], offsets)
        if lines:
            report.sections.append(("stack warnings and errors while it ran", "\n".join(lines)))
    return report


def _worrying_lines(folder: Path, offsets: dict[Path, int]) -> list[str]:
    """The warnings and errors the stack's logs gained since ``offsets``, newest last."""
    found: list[str] = []
    for path in sorted(folder.glob("*.log")):
        with path.open("rb") as log:
            log.seek(offsets.get(path, 0))
            added = log.read().decode("utf-8", "replace")
        for line in added.splitlines():
            if _worrying(line):
                found.append(f"{path.stem}: {line[:_LINE_CHARS]}")
    return found[-_MOST_LINES:]


def _worrying(line: str) -> bool:
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return isinstance(record, dict) and str(record.get("level")) in _WORRYING_LEVELS
    return any(word in line for word in _WORRYING_WORDS)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the whole ``system`` last (stable: the order within each part stays)."""
    alone = [item for item in items if "system" not in getattr(item, "fixturenames", ())]
    if len(alone) < len(items):
        with_system = [item for item in items if "system" in getattr(item, "fixturenames", ())]
        items[:] = alone + with_system


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with reachable_state_dir() as path:
        yield path


@pytest.fixture(scope="session")
def stack_service_env() -> dict[str, str]:
    """Extra environment for every service process of the session's stack (override it)."""
    return {}


@pytest.fixture(scope="session")
def stack(stack_service_env: dict[str, str]) -> Iterator[Stack]:
    """Local processes by default; ``BAI_TEST_PROVIDER=containers`` puts PostgreSQL and NATS
    in containers (testcontainers, on Docker or podman; see ``devstack.containers``)."""
    with reachable_state_dir() as state_dir:
        yield from _stack(state_dir, stack_service_env)


def _stack(state_dir: Path, service_env: dict[str, str]) -> Iterator[Stack]:
    if os.environ.get("BAI_TEST_PROVIDER", "local") != "containers":
        yield from _run(
            StackSettings(state_dir=state_dir, free_ports=True, service_env=service_env)
        )
        return
    reason = engine_unavailable_reason()
    if reason:
        pytest.exit(f"BAI_TEST_PROVIDER=containers, but {reason}", returncode=2)
    with container_servers() as (database_url, nats_url):
        yield from _run(
            StackSettings(
                state_dir=state_dir,
                free_ports=True,
                database_url=SecretStr(database_url),
                nats_url=nats_url,
                service_env=service_env,
            )
        )


def _run(settings: StackSettings) -> Iterator[Stack]:
    local = Stack(settings)
    _session_logs.append(local.logs)
    try:
        yield local
    finally:
        _session_logs.remove(local.logs)
        local.stop()


@pytest.fixture(scope="session")
def infra(stack: Stack) -> Stack:
    stack.start(only=INFRA)
    return stack


@pytest.fixture(scope="session")
def migrated(infra: Stack) -> Stack:
    infra.start(only=(*INFRA, "migrations"))
    return infra


@pytest.fixture(scope="session")
def system(stack: Stack) -> Stack:
    stack.start()
    return stack


def superuser_async_url(stack: Stack) -> str:
    """An asyncpg SQLAlchemy URL with superuser rights, for tests that build their own schema."""
    return stack.admin_dsn().replace("postgresql://", "postgresql+asyncpg://", 1)


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client bound to ``app`` in-process, with its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


# ---- identities a service under test trusts -------------------------------------------
TEST_KID = "test"
# Nothing answers here: a service under test trusts only keys handed over with use_keys.
UNREACHABLE_JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def jwks_for(key: Ed25519PrivateKey, kid: str = TEST_KID) -> dict[str, Any]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {
        "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}]
    }


def settings_for(settings_class: type[SettingsT], stack: Stack, service: str) -> SettingsT:
    """A service's settings on the session's stack, as its own database role."""
    return settings_class(
        database_url=SecretStr(stack.database_url(service)),
        nats_url=stack.nats_url,
        environment=Environment.TEST,
        identity_jwks_url=UNREACHABLE_JWKS_URL,
    )


@asynccontextmanager
async def trusting_client(app: FastAPI, key: Ed25519PrivateKey) -> AsyncIterator[httpx.AsyncClient]:
    """``app_client`` for an app that trusts ``key`` as it would the gateway's."""
    async with app_client(app) as http:
        verifier = platform_of(app).identity_verifier
        assert verifier is not None
        verifier.use_keys(jwks_for(key))
        yield http


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    """The key the app under test trusts, standing in for the gateway's."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def tenant() -> UUID:
    """A fresh tenant: the database is shared by the whole session."""
    return uuid4()


@pytest.fixture
def identity_for(
    signing_key: Ed25519PrivateKey, identity_audience: str
) -> Callable[[UUID, str], dict[str, str]]:
    """Headers carrying a valid identity of a user with ``role`` in ``tenant``, for the
    service under test (each service's conftest names its ``identity_audience``)."""

    def headers(tenant_id: UUID, role: str) -> dict[str, str]:
        token = mint_identity(
            key=signing_key,
            kid=TEST_KID,
            issuer="bai-gateway",
            audience=identity_audience,
            subject=f"user-{uuid4().hex[:12]}",
            tenant_id=tenant_id,
            roles=[role],
            scopes=["api"],
            credential="user",
        )
        return {IDENTITY_HEADER: token}

    return headers
