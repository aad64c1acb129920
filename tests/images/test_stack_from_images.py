"""The whole system from its container images: every service's api and worker in podman
(read-only root, non-root), migrations as one-off containers, against the supervisor's
PostgreSQL and NATS, behind its Traefik; then a month planned and drafted through the edge.

Builds the images first (``bai_platform.devstack.images``; the Debian base only when
absent). Where podman is missing the test skips, unless ``BAI_REQUIRE_CONTAINERS=1`` (set
by ``make test`` once it installed the tools), where it fails.
"""

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from bai_platform.devstack import SERVICES, Stack, StackSettings
from bai_platform.devstack.config import reachable_state_dir
from bai_platform.devstack.images import build_all
from bai_platform.devstack.podman import podman, podman_missing_reason

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

BRAND = {"name": "Acme Coffee", "timezone": "Europe/Madrid", "voice": {"tone": "warm"}}
CAMPAIGN = {
    "name": "December push",
    "channels": ["instagram", "linkedin"],
    "starts_on": "2026-12-01",
    "ends_on": "2026-12-31",
    "cadence": {"instagram": {"per_week": 3}, "linkedin": {"per_week": 2}},
}
DECEMBER_POSTS = 22


@pytest.fixture(scope="module")
def image_stack(stack_service_env: dict[str, str]) -> Iterator[Stack]:
    reason = podman_missing_reason()
    if reason:
        if os.environ.get("BAI_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"BAI_REQUIRE_CONTAINERS=1, but {reason}")
        pytest.skip(reason)
    for built in build_all():
        print(f"{built.image}: {built.seconds:.1f} s, {built.size / 1e6:.0f} MB")  # noqa: T201
    with reachable_state_dir() as state_dir:
        settings = StackSettings(
            state_dir=state_dir,
            free_ports=True,
            service_env=stack_service_env,
            service_runtime="podman",
        )
        stack = Stack(settings)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


def _containers(stack: Stack) -> list[dict[str, Any]]:
    """``podman inspect`` of this stack's api and worker containers (named by their ports)."""
    names = [
        f"bai-{service}-{role}-{stack.port(service if role == 'api' else f'{service}-worker')}"
        for service in SERVICES
        for role in ("api", "worker")
    ]
    inspected: list[dict[str, Any]] = json.loads(podman("container", "inspect", *names))
    return inspected


def test_every_service_runs_from_its_image_as_non_root_on_a_read_only_root(
    image_stack: Stack,
) -> None:
    containers = _containers(image_stack)
    assert len(containers) == 2 * len(SERVICES)
    for container in containers:
        assert container["HostConfig"]["ReadonlyRootfs"] is True, container["Name"]
        assert container["Config"]["User"] == "10001:10001", container["Name"]
        assert podman("exec", container["Id"], "id", "-u").strip() == "10001"
        assert container["ImageName"].startswith("localhost/bai-")


async def test_a_month_is_scheduled_and_drafted_through_the_edge_of_the_images(
    image_stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=image_stack.edge_url, timeout=10.0) as edge:
        headers = await _sign_up(edge)
        brand = await edge.post("/v1/planner/brands", json=BRAND, headers=headers)
        assert brand.status_code == 201, brand.text
        body = {**CAMPAIGN, "brand_id": brand.json()["id"]}
        campaign = await edge.post("/v1/planner/campaigns", json=body, headers=headers)
        assert campaign.status_code == 201, campaign.text
        url = f"/v1/planner/campaigns/{campaign.json()['id']}"
        scheduled = await edge.post(f"{url}/schedule", json={"month": "2026-12"}, headers=headers)
        assert scheduled.status_code == 202, scheduled.text
        assert scheduled.json()["created"] == DECEMBER_POSTS
        states = await _states_once_settled(edge, f"{url}/posts?month=2026-12", headers)
    assert states == ["draft_ready"] * DECEMBER_POSTS


async def _sign_up(edge: httpx.AsyncClient) -> dict[str, str]:
    account = {
        "email": f"owner-{uuid4().hex[:8]}@example.com",
        "password": "correct horse battery",
        "workspace": "Acme Coffee",
    }
    response = await edge.post("/v1/auth/signup", json=account)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _states_once_settled(
    edge: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> list[str]:
    """The posts' states once all are drafted, or as they stand after 60 s."""
    states: list[str] = []
    for _ in range(120):
        states = [post["state"] for post in (await edge.get(url, headers=headers)).json()["items"]]
        if states == ["draft_ready"] * DECEMBER_POSTS:
            break
        await asyncio.sleep(0.5)
    return states
