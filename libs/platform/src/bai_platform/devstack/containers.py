"""The ``containers`` provider: PostgreSQL and NATS in Docker through testcontainers.

For contributors who have a Docker engine. It yields the servers' URLs, which the stack
then treats exactly like an external ``DATABASE_URL`` / ``NATS_URL``. Where no engine is
reachable, ``docker_unavailable_reason`` says why and the callers skip with that reason.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def container_servers() -> Iterator[tuple[str, str]]:
    """Start PostgreSQL and NATS (JetStream) containers; yields (DATABASE_URL, NATS_URL)."""
    from testcontainers.nats import NatsContainer
    from testcontainers.postgres import PostgresContainer

    with (
        PostgresContainer(POSTGRES_IMAGE, driver=None) as postgres,
        NatsContainer(NATS_IMAGE, jetstream=True) as nats,
    ):
        yield postgres.get_connection_url(), nats.nats_uri()
