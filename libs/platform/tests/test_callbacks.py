"""The owner's side of n8n callbacks: verified with the tenant's secret where it lives,
recorded once in the owner's outbox, and answered with a verdict (``bai_platform.callbacks``)."""

import json
import time
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select

from bai_contracts import CallbackDelivery, CallbackVerdict, callback_subject
from bai_platform.callbacks import JobSigner, take_callback
from bai_platform.envelope import Envelope
from bai_platform.webhooks import sign

from .conftest import Sandbox

SECRET = "workflow-signing-secret-of-the-tenant"


class Jobs:
    """The owner's jobs: how each one's callbacks verify."""

    def __init__(self) -> None:
        self.signers: dict[str, JobSigner] = {}

    def add(self, *, secret: str = SECRET, accept_secret_header: bool = False) -> str:
        job_id = f"tst_{uuid4().hex}"
        self.signers[job_id] = JobSigner(uuid4(), secret, accept_secret_header)
        return job_id

    async def lookup(self, _session: Any, job_id: str) -> JobSigner | None:
        return self.signers.get(job_id)


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


def _body(job_id: str, **extra: Any) -> bytes:
    return json.dumps(
        {"job_id": job_id, "status": "completed", "content": {"text": "Hello"}, **extra}
    ).encode()


def _signed(
    job_id: str, body: bytes, *, secret: str = SECRET, at: float | None = None
) -> CallbackDelivery:
    timestamp = int(at if at is not None else time.time())
    return CallbackDelivery.of(
        job_id,
        body,
        timestamp=str(timestamp),
        signature=sign(secret, timestamp, body),
        secret=None,
    )


async def _take(sandbox: Sandbox, jobs: Jobs, delivery: CallbackDelivery) -> CallbackVerdict:
    async with sandbox.db.transaction() as session:
        return await take_callback(
            session, delivery, service=sandbox.service, lookup=jobs.lookup, outbox=sandbox.outbox
        )


async def _recorded(sandbox: Sandbox) -> list[Envelope]:
    async with sandbox.db.transaction() as session:
        rows = (await session.execute(select(sandbox.outbox.c.payload))).scalars().all()
    return [Envelope.model_validate_json(row) for row in rows]


async def test_a_signed_callback_is_recorded_for_the_owners_consumer(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    job_id = jobs.add()

    verdict = await _take(sandbox, jobs, _signed(job_id, _body(job_id)))

    assert verdict.outcome == "accepted"
    [envelope] = await _recorded(sandbox)
    assert envelope.id == verdict.event_id
    assert envelope.type == callback_subject(sandbox.service)
    assert envelope.tenantid == str(jobs.signers[job_id].tenant_id)
    assert envelope.subject == job_id
    assert envelope.data["payload"]["content"] == {"text": "Hello"}
    assert envelope.data["verified_by"] == "signature"


async def test_a_repeated_callback_is_recorded_once_with_the_same_event_id(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    job_id = jobs.add()
    body = _body(job_id)

    first = await _take(sandbox, jobs, _signed(job_id, body))
    again = await _take(sandbox, jobs, _signed(job_id, body, at=time.time() - 5))

    assert (first.outcome, again.outcome) == ("accepted", "accepted")
    assert first.event_id == again.event_id
    assert len(await _recorded(sandbox)) == 1


@pytest.mark.parametrize(
    "forge", ["tampered-body", "other-secret", "stale", "future", "no-headers", "v0-only"]
)
async def test_a_forged_or_stale_callback_is_refused_and_nothing_is_recorded(
    sandbox: Sandbox, jobs: Jobs, forge: str
) -> None:
    job_id = jobs.add()
    body = _body(job_id)
    genuine = _signed(job_id, body)
    delivery = {
        "tampered-body": _signed(job_id, _body(job_id, status="failed")).model_copy(
            update={"body_base64": genuine.body_base64}
        ),
        "other-secret": _signed(job_id, body, secret="not-the-tenants-secret"),
        "stale": _signed(job_id, body, at=time.time() - 301),
        "future": _signed(job_id, body, at=time.time() + 301),
        "no-headers": CallbackDelivery.of(
            job_id, body, timestamp=None, signature=None, secret=None
        ),
        "v0-only": genuine.model_copy(
            update={"signature": (genuine.signature or "").replace("v1=", "v0=")}
        ),
    }[forge]

    verdict = await _take(sandbox, jobs, delivery)

    assert verdict.outcome == "invalid_signature"
    assert await _recorded(sandbox) == []


async def test_any_matching_v1_signature_passes_while_secrets_roll(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    job_id = jobs.add()
    body = _body(job_id)
    delivery = _signed(job_id, body)
    old = _signed(job_id, body, secret="the-previous-secret").signature
    rolled = delivery.model_copy(update={"signature": f"{old},{delivery.signature}"})
    assert (await _take(sandbox, jobs, rolled)).outcome == "accepted"


async def test_the_original_shared_secret_header_works_only_where_configured(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    legacy, modern = jobs.add(accept_secret_header=True), jobs.add()
    for job_id, expected in ((legacy, "accepted"), (modern, "invalid_signature")):
        delivery = CallbackDelivery.of(
            job_id, _body(job_id), timestamp=None, signature=None, secret=SECRET
        )
        assert (await _take(sandbox, jobs, delivery)).outcome == expected
    wrong = CallbackDelivery.of(
        legacy, _body(legacy), timestamp=None, signature=None, secret="nope"
    )
    assert (await _take(sandbox, jobs, wrong)).outcome == "invalid_signature"


async def test_a_replayed_legacy_callback_keeps_its_event_id_for_the_consumers_inbox(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    # X-BAI-Secret carries no timestamp, so a replay is taken at any time; it is harmless
    # because its event id (the job and the body) is the one the consumer's inbox holds.
    job_id = jobs.add(accept_secret_header=True)
    delivery = CallbackDelivery.of(
        job_id, _body(job_id), timestamp=None, signature=None, secret=SECRET
    )
    first, replay = await _take(sandbox, jobs, delivery), await _take(sandbox, jobs, delivery)
    assert first.event_id == replay.event_id
    [envelope] = await _recorded(sandbox)
    assert envelope.data["verified_by"] == "secret_header"


async def test_an_empty_secret_verifies_nothing(sandbox: Sandbox, jobs: Jobs) -> None:
    job_id = jobs.add(secret="")
    verdict = await _take(sandbox, jobs, _signed(job_id, _body(job_id), secret=""))
    assert verdict.outcome == "invalid_signature"


async def test_a_job_the_owner_does_not_know_is_refused(sandbox: Sandbox, jobs: Jobs) -> None:
    job_id = f"tst_{uuid4().hex}"
    verdict = await _take(sandbox, jobs, _signed(job_id, _body(job_id)))
    assert verdict.outcome == "unknown_job"


NESTED = b"[" * 100_000 + b"]" * 100_000  # past Python's recursion limit


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", NESTED, None])
async def test_a_malformed_callback_is_refused_and_nothing_is_recorded(
    sandbox: Sandbox, jobs: Jobs, body: bytes | None
) -> None:
    job_id = jobs.add()
    raw = body if body is not None else _body(f"tst_{uuid4().hex}")  # someone else's job
    verdict = await _take(sandbox, jobs, _signed(job_id, raw))
    assert verdict.outcome == "invalid_callback"
    assert await _recorded(sandbox) == []


# Header bytes reach the gateway as Latin-1, so b"\xb2" arrives as "²", which str.isdigit()
# accepts and int() does not; compare_digest refuses non-ASCII text; int() refuses 4,301+
# digits.
ODD_HEADERS: dict[str, dict[str, str]] = {
    "superscript-timestamp": {"timestamp": "\xb2"},
    "superscript-inside-timestamp": {"timestamp": "17\xb300000000"},
    "timestamp-beyond-ints-digit-limit": {"timestamp": "9" * 5000},
    "non-ascii-signature": {"signature": "v1=é" + "0" * 62},
    "non-ascii-among-signatures": {"signature": "v1=\xff,v1=" + "0" * 64},
}


@pytest.mark.parametrize("odd", list(ODD_HEADERS))
async def test_signature_headers_in_odd_characters_are_refused_never_a_crash(
    sandbox: Sandbox, jobs: Jobs, odd: str
) -> None:
    job_id = jobs.add()
    delivery = _signed(job_id, _body(job_id)).model_copy(update=ODD_HEADERS[odd])
    assert (await _take(sandbox, jobs, delivery)).outcome == "invalid_signature"


async def test_a_shared_secret_header_in_odd_characters_is_refused(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    job_id = jobs.add(accept_secret_header=True)
    delivery = CallbackDelivery.of(
        job_id, _body(job_id), timestamp=None, signature=None, secret=SECRET + "\xe9"
    )
    assert (await _take(sandbox, jobs, delivery)).outcome == "invalid_signature"


async def test_a_body_that_is_not_base64_is_refused(sandbox: Sandbox, jobs: Jobs) -> None:
    delivery = _signed(job_id := jobs.add(), _body(job_id))
    garbled = delivery.model_copy(update={"body_base64": "not base64!"})
    assert (await _take(sandbox, jobs, garbled)).outcome == "invalid_callback"
