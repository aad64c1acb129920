"""The containers provider where a Docker engine runs; skipped, with the reason, elsewhere."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.containers import container_servers, docker_unavailable_reason

REASON = docker_unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def test_containers_serve_as_the_stacks_database_and_broker(tmp_path: Path) -> None:
    with container_servers() as (database_url, nats_url):
        stack = Stack(
            StackSettings(
                state_dir=tmp_path,
                free_ports=True,
                database_url=SecretStr(database_url),
                nats_url=nats_url,
            )
        )
        try:
            stack.start(only=["postgres", "nats", "migrations"])
            assert stack.processes == {}
        finally:
            stack.stop()
