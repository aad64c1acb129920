"""``BAI_REPLICAS=2``: two api and two worker processes per service behind Traefik.

Limits stay exact across replicas (the gateway's counters live in Valkey, so the 41st
request of a 40-a-minute workspace is refused whichever gateway counts it), and a replica
that is gone costs at most the request already on its way to it: Traefik health-checks the
servers and sends a request whose connection failed to the other one.
"""

import time
from collections import Counter
from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest

from bai_platform.devstack import Stack
from bai_platform.devstack.process import pid_alive

from .conftest import replicated_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_MINUTE = 40
LIMITS = {
    "ip_auth": {"limit": 1_000_000},
    "credential": {"limit": 1_000_000},
    "tenant_plans": {"starter": {"limit": PER_MINUTE}},
}


@pytest.fixture(scope="module")
def replicated() -> Iterator[Stack]:
    with replicated_stack(LIMITS) as stack:
        yield stack


def _sign_up(edge: httpx.Client) -> dict[str, str]:
    response = edge.post(
        "/v1/auth/signup",
        json={
            "email": f"owner-{uuid4().hex[:8]}@example.com",
            "password": "correct horse battery",
            "workspace": "Replicated",
        },
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_every_service_runs_twice_with_its_own_process(replicated: Stack) -> None:
    names = set(replicated.processes)
    for service in ("gateway", "planner", "creator", "mining", "billing"):
        for role in ("api", "worker"):
            assert {f"{service}-{role}", f"{service}-{role}-2"} <= names
    assert "valkey" in names
    pids = [process.pid for process in replicated.processes.values()]
    assert len(set(pids)) == len(pids)
    assert len(set(replicated.service_urls("planner"))) == 2


def test_a_workspace_quota_is_exact_across_gateway_replicas(replicated: Stack) -> None:
    with httpx.Client(base_url=replicated.edge_url, timeout=10) as edge:
        headers = _sign_up(edge)
        answers = Counter(
            edge.get("/v1/planner/campaigns", headers=headers).status_code
            for _ in range(PER_MINUTE + 10)
        )
    # Counted apart by two gateways, about twice the quota would pass.
    assert answers == Counter({200: PER_MINUTE, 429: 10})


def test_a_killed_api_replica_costs_at_most_the_request_on_its_pooled_connection(
    replicated: Stack,
) -> None:
    """kill -9 of one gateway and one planner api: requests go on to the other replicas
    (the supervisor brings the killed ones back meanwhile). A request that Traefik had
    already written on a kept-alive connection to a killed process may end in 502 (seen
    once in 30, right after the kill): no backend answered it, and nothing was applied.
    Every request after that is answered. (A graceful stop costs nothing: see
    test_rolling_restart.py.)"""
    with httpx.Client(base_url=replicated.edge_url, timeout=10) as edge:
        headers = _sign_up(edge)
        for name in ("gateway-api", "planner-api"):
            _kill(replicated, name)
        answers = [edge.get("/v1/planner/brands", headers=headers).status_code for _ in range(30)]
    assert set(answers[:2]) <= {200, 502}, answers
    assert answers[2:] == [200] * 28, answers


def _kill(stack: Stack, name: str) -> None:
    """SIGKILL ``name`` and wait until it is gone (its sockets closed with it)."""
    pid = stack.crash(name)
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"{name} outlived SIGKILL"
        time.sleep(0.02)
