"""The ``containers`` provider: PostgreSQL and NATS in containers through testcontainers.

It yields the servers' URLs, which the stack then treats exactly like an external
``DATABASE_URL`` / ``NATS_URL``. The engine is, in order:

- a Docker engine (``DOCKER_HOST``, or ``/var/run/docker.sock``): the official images
  ``postgres:17-alpine`` and ``nats:2.10-alpine``;
- else podman: its Docker-compatible API (``podman system service``) on a private socket
  for the duration, with Ryuk off (its image cannot be pulled; the containers are removed
  on exit instead), and images built here from Debian packages (``images``).

``BAI_TEST_POSTGRES_IMAGE`` / ``BAI_TEST_NATS_IMAGE`` choose other images on either engine.
Where neither engine can be had, ``engine_unavailable_reason`` says why.
"""

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from bai_platform.devstack import images
from bai_platform.devstack.podman import api_socket, podman_missing_reason

POSTGRES_IMAGE = "postgres:17-alpine"
NATS_IMAGE = "nats:2.10-alpine"


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers; otherwise why it cannot be used."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return (
            "no Docker engine on this machine (/var/run/docker.sock is absent, DOCKER_HOST unset)"
        )
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:
        return f"the Docker engine does not answer: {exc}"
    return None


def engine_unavailable_reason() -> str | None:
    """None when Docker answers or podman is installed; otherwise why neither can be used."""
    docker_reason = docker_unavailable_reason()
    podman_reason = podman_missing_reason()
    if docker_reason and podman_reason:
        return f"{docker_reason}, and {podman_reason}"
    return None


@contextlib.contextmanager
def container_servers() -> Iterator[tuple[str, str]]:
    """Start PostgreSQL and NATS (JetStream) containers; yields (DATABASE_URL, NATS_URL)."""
    if docker_unavailable_reason() is None:
        with _servers(POSTGRES_IMAGE, NATS_IMAGE) as urls:
            yield urls
        return
    images.build_base()
    images.build_test_servers()
    with _podman_as_docker(), _servers(images.POSTGRES_IMAGE, images.NATS_IMAGE) as urls:
        yield urls


@contextlib.contextmanager
def _podman_as_docker() -> Iterator[None]:
    """testcontainers pointed at podman's API; everything it changed is put back on exit.

    Podman runs on this machine and publishes ports here, so containers are reached on
    127.0.0.1 (testcontainers would otherwise guess a gateway it cannot read from podman).
    """
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    config = testcontainers_config
    saved = (config.ryuk_disabled, config.tc_host_override, config.connection_mode_override)
    previous_host = os.environ.get("DOCKER_HOST")
    with api_socket() as url:
        os.environ["DOCKER_HOST"] = url
        config.ryuk_disabled = True
        config.tc_host_override = "127.0.0.1"
        config.connection_mode_override = ConnectionMode.docker_host
        try:
            yield
        finally:
            config.ryuk_disabled, config.tc_host_override, config.connection_mode_override = saved
            if previous_host is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous_host


@contextlib.contextmanager
def _servers(postgres_image: str, nats_image: str) -> Iterator[tuple[str, str]]:
    postgres_image = os.environ.get("BAI_TEST_POSTGRES_IMAGE", postgres_image)
    nats_image = os.environ.get("BAI_TEST_NATS_IMAGE", nats_image)
    with contextlib.ExitStack() as running:
        # testcontainers' NATS module calls its own deprecated wait helpers: its warnings,
        # not ours, silenced only while the containers start (never around the tests).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="testcontainers")
            from testcontainers.community.nats import NatsContainer
            from testcontainers.community.postgres import PostgresContainer

            postgres = running.enter_context(PostgresContainer(postgres_image, driver=None))
            nats = running.enter_context(NatsContainer(nats_image, jetstream=True))
        yield postgres.get_connection_url(), nats.nats_uri()
