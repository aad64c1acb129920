"""Test helpers: the session's local stack and clients for it.

The test session starts the same processes ``make run`` does, from the same binaries, on
free ports and in a temporary state folder, and stops them at the end. Fixtures start
only what a test needs: ``infra`` (PostgreSQL and NATS), ``migrated`` (plus every
schema), ``system`` (everything, behind Traefik).
"""

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.containers import container_servers, docker_unavailable_reason

INFRA = ("postgres", "nats")


@contextmanager
def reachable_state_dir() -> Iterator[Path]:
    """A fresh state folder the unprivileged PostgreSQL user can reach, removed afterwards.

    pytest's own temporary folders are private (mode 700): a server data folder there would
    have to move out of the tree (see ``devstack.postgres``) and would outlive the test.
    """
    path = Path(tempfile.mkdtemp(prefix="bai-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with reachable_state_dir() as path:
        yield path


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Local processes by default; ``BAI_TEST_PROVIDER=containers`` puts PostgreSQL and NATS
    in Docker (testcontainers) instead."""
    with reachable_state_dir() as state_dir:
        yield from _stack(state_dir)


def _stack(state_dir: Path) -> Iterator[Stack]:
    if os.environ.get("BAI_TEST_PROVIDER", "local") != "containers":
        yield from _run(StackSettings(state_dir=state_dir, free_ports=True))
        return
    reason = docker_unavailable_reason()
    if reason:
        pytest.exit(f"BAI_TEST_PROVIDER=containers, but {reason}", returncode=2)
    with container_servers() as (database_url, nats_url):
        yield from _run(
            StackSettings(
                state_dir=state_dir,
                free_ports=True,
                database_url=SecretStr(database_url),
                nats_url=nats_url,
            )
        )


def _run(settings: StackSettings) -> Iterator[Stack]:
    local = Stack(settings)
    try:
        yield local
    finally:
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
