"""The operator's dead-letter commands, against a NATS server that enforces every user.

Dead letters of all services share one stream and a replay publishes another service's
fact again, so ``python -m <service> dead-letters`` and ``replay`` are the NATS admin
user's: with it they list and replay; with the service's own user they say so and exit 2
(instead of a traceback after a timeout).
"""

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from uuid import uuid4

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from bai_contracts import DEAD_LETTER_STREAM, STREAMS
from bai_platform.deadletter import CONSUMER, ORIGINAL_SUBJECT, REASON
from bai_platform.devstack import Stack
from bai_platform.messaging import ensure_streams
from bai_platform.nats_permissions import ADMIN_USER

pytestmark = pytest.mark.slow

# A subject of planner's stream that no consumer reads: the replay lands there harmlessly.
ORIGINAL = "bai.planner.dead-letter-drill.v1"


@pytest.fixture
async def admin(infra: Stack) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(infra.nats_url, name="dead-letter-drill")
    await ensure_streams(nc.jetstream(), [*STREAMS, DEAD_LETTER_STREAM])
    yield nc
    await nc.close()


@pytest.fixture
async def dead_letter(admin: NatsClient) -> int:
    """A dead letter of planner's, as its consumer would leave it."""
    headers = {CONSUMER: "drill", ORIGINAL_SUBJECT: ORIGINAL, REASON: f"drill {uuid4().hex}"}
    ack = await admin.jetstream().publish("bai.dlq.planner.drill", b"{}", headers=headers)
    return ack.seq


def _command(infra: Stack, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BAI_NATS_URL": infra.nats_address,
        "BAI_NATS_USER": user,
        "BAI_NATS_PASSWORD": infra.nats_passwords[user],
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "planner", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_admin_lists_a_services_dead_letters(infra: Stack, dead_letter: int) -> None:
    listed = _command(infra, ADMIN_USER, "dead-letters", "--limit", "1000")

    assert listed.returncode == 0, listed.stderr
    assert f"│ {dead_letter} " in listed.stdout
    assert ORIGINAL in listed.stdout


async def test_the_admin_replays_a_dead_letter_on_its_subject_and_removes_it(
    infra: Stack, admin: NatsClient, dead_letter: int
) -> None:
    js = admin.jetstream()
    before = (await js.stream_info("PLANNER")).state.last_seq

    replayed = _command(infra, ADMIN_USER, "replay", str(dead_letter))

    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {dead_letter} to {ORIGINAL}" in replayed.stdout
    # Other tests' workers may publish on planner's stream meanwhile: look at what came after.
    after = (await js.stream_info("PLANNER")).state.last_seq
    subjects = [
        (await js.get_msg("PLANNER", seq=seq)).subject for seq in range(before + 1, after + 1)
    ]
    assert subjects.count(ORIGINAL) == 1
    with pytest.raises(NotFoundError):
        await js.get_msg(DEAD_LETTER_STREAM.name, seq=dead_letter)


@pytest.mark.usefixtures("dead_letter")
def test_a_services_own_user_is_told_to_ask_the_admin(infra: Stack) -> None:
    refused = _command(infra, "planner", "dead-letters")

    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert "admin user" in " ".join(refused.stderr.split())
