"""Each service's NATS user may publish only its own facts and serve only its own endpoints.

The session's NATS runs with the permission table (bai_platform.nats_permissions); the
tests connect as services with the passwords the local stack made, and as the admin.
Clients are named ``*-probe`` so the integration suite's watch for refusals of real
service processes ignores the refusals provoked here.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from bai_contracts import STREAMS, StreamSpec, SubscriptionChanged, quota_subject
from bai_platform.devstack import Stack
from bai_platform.devstack.config import SERVICES, repo_root
from bai_platform.messaging import NatsAuth, connect, ensure_streams
from bai_platform.nats_permissions import (
    ADMIN_USER,
    ROLES,
    kubernetes_file,
    password_variable,
    permissions,
)
from bai_platform.settings import Environment, ServiceSettings

BILLING_FACT = SubscriptionChanged.subject
KUBERNETES_FILE = repo_root() / "deploy/k8s/base/nats/authorization.conf"


@pytest.fixture
async def admin(infra: Stack) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(infra.nats_url, name="admin-probe")
    await ensure_streams(nc.jetstream(), STREAMS)
    yield nc
    await nc.close()


@asynccontextmanager
async def as_service(stack: Stack, service: str) -> AsyncIterator[NatsClient]:
    """Connected as ``service``'s own user, the way its processes connect."""
    auth = NatsAuth(user=service, password=SecretStr(stack.nats_passwords[service]))
    nc = await connect(stack.nats_address, name=f"{service}-probe", auth=auth)
    try:
        yield nc
    finally:
        await nc.close()


async def _last_sequence(admin: NatsClient, stream: str) -> int:
    return (await admin.jetstream().stream_info(stream)).state.last_seq


async def _refusals_of(action: Callable[[], Awaitable[object]]) -> list[str]:
    """Run ``action`` and collect the permission violations the connection logged: the
    server's -ERR arrives after the PUB or SUB, so this waits (5 s at most) for the first."""

    def refusals() -> list[str]:  # nats-py hands the server's -ERR over in lower case
        return [e["error"] for e in logs if e["event"] == "nats_permissions_violation"]

    with capture_logs() as logs:
        await action()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while not refusals():
                    await asyncio.sleep(0.02)
    return refusals()


async def test_billing_publishes_its_own_subscription_changes(
    admin: NatsClient, infra: Stack
) -> None:
    before = await _last_sequence(admin, "BILLING")
    async with as_service(infra, "billing") as billing:
        ack = await billing.jetstream().publish(BILLING_FACT, b"{}", timeout=2)
    assert ack.stream == "BILLING"
    assert await _last_sequence(admin, "BILLING") == before + 1


async def test_planner_cannot_publish_billing_facts(admin: NatsClient, infra: Stack) -> None:
    before = await _last_sequence(admin, "BILLING")
    async with as_service(infra, "planner") as planner:
        refused = await _refusals_of(lambda: planner.publish(BILLING_FACT, b"{}"))
        with pytest.raises(NatsTimeout):  # no stream ever sees it, so no ack comes
            await planner.jetstream().publish(BILLING_FACT, b"{}", timeout=1)
    assert refused == [f'nats: permissions violation for publish to "{BILLING_FACT}"'.lower()]
    assert await _last_sequence(admin, "BILLING") == before


async def test_planner_cannot_serve_billings_credit_reservations(infra: Stack) -> None:
    subject = quota_subject("reserve")
    async with as_service(infra, "planner") as planner:
        refused = await _refusals_of(lambda: planner.subscribe(subject, queue="q"))
    assert refused == [
        f'nats: permissions violation for subscription to "{subject}" using queue "q"'
    ]


async def test_a_service_cannot_read_another_services_replies(infra: Stack) -> None:
    async with as_service(infra, "mining") as mining:
        refused = await _refusals_of(lambda: mining.subscribe("_INBOX.creator.>"))
    assert refused == ['nats: permissions violation for subscription to "_inbox.creator.>"']


async def test_a_service_cannot_change_or_read_another_services_stream(
    admin: NatsClient, infra: Stack
) -> None:
    async with as_service(infra, "planner") as planner:
        js = planner.jetstream(timeout=1)
        with pytest.raises((NatsTimeout, APIError)):
            await js.delete_stream("BILLING")
        with pytest.raises((NatsTimeout, APIError)):
            await js.add_consumer("BILLING", durable_name=f"thief-{uuid4().hex[:6]}")
    assert (await admin.jetstream().stream_info("BILLING")).config.name == "BILLING"


async def test_billing_answers_creators_reservation_question(infra: Stack) -> None:
    """Positive control of the RPC rules: billing serves, creator asks, the answer returns."""
    subject = quota_subject("reserve")
    async with as_service(infra, "billing") as billing, as_service(infra, "creator") as creator:

        async def answer(msg: Msg) -> None:
            await msg.respond(b"granted")

        await billing.subscribe(subject, queue="q", cb=answer)
        await billing.flush()
        # As ``rpc.ask`` does: "no responders" until the server has the new interest (seen
        # once in CI right after the flush) is asked again; a refusal would never answer.
        async with asyncio.timeout(10):
            while True:
                try:
                    reply = await creator.request(subject, b"{}", timeout=2)
                    break
                except NoRespondersError:
                    await asyncio.sleep(0.05)
    assert reply.data == b"granted"


def test_only_billing_may_serve_billings_endpoints() -> None:
    servers = {r.service for r in ROLES if quota_subject("reserve") in permissions(r).subscribe}
    assert servers == {"billing"}


def test_each_service_publishes_facts_only_on_its_own_subjects() -> None:
    for role in ROLES:
        facts = [s for s in permissions(role).publish if s.startswith("bai.")]
        own = [f"bai.{role.service}.>", f"bai.dlq.{role.service}.>"]
        assert facts == [*own, *role.asks]
        assert all(s.startswith("bai.rpc.") for s in role.asks)


def test_each_service_subscribes_only_to_its_inbox_endpoints_and_discovery() -> None:
    for role in ROLES:
        extra = ["$SRV.>"] if role.serves else []
        expected = [f"_INBOX.{role.service}.>", *role.serves, *extra]
        assert permissions(role).subscribe == expected


def test_every_service_has_a_role() -> None:
    assert sorted(r.service for r in ROLES) == sorted(SERVICES)


def test_the_committed_kubernetes_file_is_a_fresh_rendering() -> None:
    assert KUBERNETES_FILE.read_text() == kubernetes_file(), (
        "regenerate: python -m bai_platform.nats_permissions > " + str(KUBERNETES_FILE)
    )


def test_nats_server_accepts_the_kubernetes_file(tmp_path: Path) -> None:
    nats_server = str(Path(sys.executable).parent / "nats-server")
    config = tmp_path / "nats.conf"
    (tmp_path / KUBERNETES_FILE.name).write_text(KUBERNETES_FILE.read_text())
    config.write_text(f"include ./{KUBERNETES_FILE.name}\n")
    users = [ADMIN_USER, *(r.service for r in ROLES)]
    env = {**os.environ, **{password_variable(u): uuid4().hex for u in users}}
    result = subprocess.run(
        [nats_server, "-t", "-c", str(config)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout


async def test_streams_get_the_replicas_asked_for(admin: NatsClient) -> None:
    """One replica here; three are refused by a single server, so the setting is applied."""
    spec = StreamSpec(name=f"R{uuid4().hex[:8].upper()}", service=f"r{uuid4().hex[:8]}")
    js = admin.jetstream()
    with pytest.raises(APIError, match="replicas"):
        await ensure_streams(js, [spec], replicas=3)
    await ensure_streams(js, [spec], replicas=1)
    try:
        assert (await js.stream_info(spec.name)).config.num_replicas == 1
    finally:
        await js.delete_stream(spec.name)


def test_a_service_connects_as_itself_by_default() -> None:
    settings = ServiceSettings(service_name="mining", nats_password=SecretStr("p" * 32))
    assert settings.nats_auth.options()["user"] == "mining"
    assert settings.nats_auth.options()["inbox_prefix"] == "_INBOX.mining"
    assert ServiceSettings(service_name="mining").nats_auth.options() == {}


def test_production_refuses_a_weak_nats_password() -> None:
    with pytest.raises(ValidationError, match="BAI_NATS_PASSWORD"):
        ServiceSettings(environment=Environment.PRODUCTION, nats_password=SecretStr("short"))
