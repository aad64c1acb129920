"""Fixtures for whole-system tests through the edge.

Every test here also fails if a service's process was refused anything by NATS meanwhile
(nats-server logs each refusal): the services run with their own users and permissions
(bai_platform.nats_permissions), so a refusal is a gap in the permission table.
"""

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.config import reachable_state_dir

pytestmark = pytest.mark.integration

# nats-server: ... - "v2.16.0:python3:planner-worker" - "$G/user:planner" - Publish Violation ...
VIOLATION = re.compile(r'"[^"]*:(?P<client>[^":]+-(?:api|worker|cli))" - .* Violation')


@pytest.fixture(autouse=True)
def no_nats_permission_violations(stack: Stack) -> Iterator[None]:
    log = stack.logs / "nats.log"
    start = log.stat().st_size if log.exists() else 0
    yield
    if not log.exists():
        return
    with log.open("rb") as text:
        text.seek(start)
        refused = [line for line in text.read().decode().splitlines() if VIOLATION.search(line)]
    assert not refused, "NATS refused a service:\n" + "\n".join(refused[:20])


@dataclass(frozen=True)
class Account:
    email: str
    token: str
    tenant_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def edge(system: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.edge_url, timeout=10.0) as client:
        yield client


async def sign_up(edge: httpx.AsyncClient, workspace: str = "Acme Coffee") -> Account:
    email = f"owner-{uuid4().hex[:8]}@example.com"
    response = await edge.post(
        "/v1/auth/signup",
        json={
            "email": email,
            "password": "correct horse battery",
            "workspace": workspace,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(email=email, token=body["access_token"], tenant_id=body["tenant_id"])


@pytest.fixture
async def account(edge: httpx.AsyncClient) -> Account:
    return await sign_up(edge)


DECEMBER_POSTS = 22  # December 2026 at instagram 3 a week and linkedin 2 a week


def december_campaign(brand_id: str) -> dict[str, Any]:
    """The body of a campaign for December with 22 posts (the tests' usual month)."""
    return {
        "brand_id": brand_id,
        "name": "December push",
        "brief": "Launch the winter blend",
        "channels": ["instagram", "linkedin"],
        "starts_on": "2026-12-01",
        "ends_on": "2026-12-31",
        "cadence": {"instagram": {"per_week": 3}, "linkedin": {"per_week": 2}},
    }


async def new_december_campaign(edge: httpx.AsyncClient, account: Account, brand_id: str) -> str:
    """The brand's campaign for December with 22 posts (``december_campaign``); its id."""
    campaign = await edge.post(
        "/v1/planner/campaigns", json=december_campaign(brand_id), headers=account.headers
    )
    assert campaign.status_code == 201, campaign.text
    campaign_id: str = campaign.json()["id"]
    return campaign_id


async def new_brand(edge: httpx.AsyncClient, account: Account, name: str = "Acme Coffee") -> str:
    """A brand of the account's workspace (Europe/Madrid, a warm voice); its id."""
    body = {
        "name": name,
        "timezone": "Europe/Madrid",
        "voice": {"tone": "warm", "keywords": ["coffee", "mornings"], "avoid": ["cheap"]},
    }
    response = await edge.post("/v1/planner/brands", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    brand_id: str = response.json()["id"]
    return brand_id


async def new_campaign(
    edge: httpx.AsyncClient,
    account: Account,
    brand_id: str,
    cadence: dict[str, Any],
    *,
    ends_on: str = "2026-12-31",
) -> str:
    """A campaign of the brand from 1 December with this cadence by channel; its id."""
    campaign = await edge.post(
        "/v1/planner/campaigns",
        json={
            "brand_id": brand_id,
            "name": "December",
            "brief": "Launch the winter blend",
            "channels": list(cadence),
            "starts_on": "2026-12-01",
            "ends_on": ends_on,
            "cadence": cadence,
        },
        headers=account.headers,
    )
    assert campaign.status_code == 201, campaign.text
    campaign_id: str = campaign.json()["id"]
    return campaign_id


@contextmanager
def replicated_stack(
    rate_limits: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A stack of its own with two api and two worker processes per service (``env``: more
    environment for every service process)."""
    with reachable_state_dir() as state:
        yield from _replicated(state, {"BAI_RATE_LIMITS": json.dumps(rate_limits), **(env or {})})


def _replicated(state: Path, service_env: dict[str, str]) -> Iterator[Stack]:
    stack = Stack(
        StackSettings(state_dir=state, free_ports=True, replicas=2, service_env=service_env)
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
