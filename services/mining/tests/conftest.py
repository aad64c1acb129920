"""Mining test fixtures: the app on the session's real database, trusted identities, a
stand-in for billing's quota answers, and the workflows' secret box."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from nats.micro import add_service
from nats.micro.request import Request
from sqlalchemy import update

from bai_contracts import QuotaAnswer, quota_subject
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.messaging import connect
from bai_platform.secrets import fernet_for
from bai_platform.testing import settings_for, trusting_client
from mining.app import create_app
from mining.models import ExtractionJob
from mining.settings import MiningSettings
from mining.workflows import SECRETS_PURPOSE


@pytest.fixture(scope="session")
def mining_settings(migrated: Stack) -> MiningSettings:
    return settings_for(MiningSettings, migrated, "mining")


@pytest.fixture
async def client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    async with trusting_client(create_app(mining_settings), signing_key) as http:
        yield http


@pytest.fixture
async def private_client(
    mining_settings: MiningSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a deployment that allows private destinations (stand-in workflows listen
    on 127.0.0.1)."""
    allowing = mining_settings.model_copy(update={"allow_private_destinations": True})
    async with trusting_client(create_app(allowing), signing_key) as http:
        yield http


@pytest.fixture(scope="session")
async def mining_db(mining_settings: MiningSettings) -> AsyncIterator[Database]:
    database = Database(mining_settings)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def end_the_tests_jobs(mining_db: Database, tenant: UUID) -> AsyncIterator[None]:
    """Jobs the test left queued or running are ended, so later tests' passes leave them be."""
    yield
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(
                ExtractionJob.tenant_id == tenant, ExtractionJob.state.in_(("queued", "running"))
            )
            .values(state="cancelled", problems=["ended by the test"])
        )


@pytest.fixture
def workflow_box(mining_settings: MiningSettings) -> Fernet:
    """What the workflows' secrets are encrypted with."""
    return fernet_for(mining_settings.secret_key, SECRETS_PURPOSE)


# ---- billing, stood in -------------------------------------------------------------------
@dataclass
class Billing:
    """A stand-in answering billing's quota questions (the contract in bai_contracts)."""

    asked: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    refuse: bool = False

    async def answer(self, request: Request) -> None:
        operation = request.subject.rsplit(".", 1)[-1]
        self.asked.append((operation, json.loads(request.data)))
        if operation == "reserve" and self.refuse:
            answer = QuotaAnswer(ok=False, code="insufficient_credits", reason="20 needed, 3 left")
        else:
            answer = QuotaAnswer(ok=True, balances={"extraction_pages": 480})
        await request.respond(answer.model_dump_json().encode())

    def of(self, job_id: str) -> list[tuple[str, dict[str, object]]]:
        return [(op, body) for op, body in self.asked if body.get("reference") == job_id]


@pytest.fixture
async def nats_client(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="mining-tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def billing(nats_client: NatsClient) -> AsyncIterator[Billing]:
    stand_in = Billing()
    service = await add_service(nats_client, name="billing-quota-test", version="0.0.1")
    for operation in ("reserve", "commit", "release"):
        await service.add_endpoint(
            name=operation, subject=quota_subject(operation), handler=stand_in.answer
        )
    await nats_client.flush()  # the server knows the responders before any question is asked
    try:
        yield stand_in
    finally:
        await service.stop()
