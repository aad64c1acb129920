"""The OpenAI-compatible engine against a small local server speaking chat completions."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.fernet import Fernet
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, update
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bai_contracts import (
    WIDGET_LOOKUP_SUBJECT,
    BrandVoice,
    ContentFailed,
    ContentGenerated,
    PostGenerationRequested,
    WidgetFound,
    WidgetLookup,
)
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope, new_event
from bai_platform.messaging import connect
from bai_platform.rpc import ask
from bai_platform.secrets import fernet_for
from bai_platform.worker import WorkerContext
from bai_testing.servers import dripping_body, served
from creator.clients.openai import (
    Endpoint,
    EngineFailed,
    chat_completion,
    messages_for,
    parse_reply,
)
from creator.events import on_generation_requested
from creator.models import ChatWidget, EngineSettings, GenerationJob, outbox
from creator.service.engines import n8n, openai_jobs
from creator.service.engines.config import ENGINE_SECRETS, OPENAI_COMPATIBLE
from creator.settings import CreatorSettings
from creator.worker import OpenAIRunner, openai_calls, widget_lookup

KEY = "sk-test-0123456789"
VOICE = BrandVoice(tone="warm", keywords=["coffee"], avoid=["cheap"], language="es")


def completion(content: str) -> dict[str, Any]:
    """A chat-completions answer as OpenAI's API shapes it."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1796000000,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }


@dataclass
class Provider:
    """What reached the fake provider, and what it answers next."""

    base_url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    content: str = json.dumps({"text": "Café de invierno, ya aquí.", "hashtags": ["#coffee"]})
    drip: bool = False  # answer one byte at a time, each well within a read timeout


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider()

    async def completions(request: Request) -> Response:
        state.received.append(await request.json())
        state.headers.append(dict(request.headers))
        if state.drip:
            return StreamingResponse(dripping_body(), media_type="application/json")
        if state.status != 200:
            error = {"error": {"message": "Incorrect API key provided", "type": "invalid_request"}}
            return JSONResponse(error, status_code=state.status)
        return JSONResponse(completion(state.content))

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    async with served(app) as base:
        state.base_url = f"{base}/v1"
        yield state


def request(channel: str = "instagram", note: str | None = None) -> PostGenerationRequested:
    return PostGenerationRequested(
        request_id=uuid4(),
        post_id=uuid4(),
        campaign_id=uuid4(),
        brand_id=uuid4(),
        channel=channel,
        scheduled_at=datetime(2026, 12, 2, 9, tzinfo=UTC),
        campaign_name="December push",
        brief="Launch the winter blend.",
        brand_name="Acme Coffee",
        voice=VOICE,
        note=note,
    )


@pytest.fixture
async def on_openai(
    creator_db: Database, creator_settings: CreatorSettings, tenant: UUID, provider: Provider
) -> None:
    box = fernet_for(creator_settings.secret_key, ENGINE_SECRETS)
    async with creator_db.transaction() as session:
        session.add(
            EngineSettings(
                tenant_id=tenant,
                engine=OPENAI_COMPATIBLE,
                base_url=provider.base_url,
                model="gpt-test",
                api_key=box.encrypt(KEY.encode()),
                accept_secret_header=False,
                deadline_seconds=600,
                updated_by="test",
            )
        )


@pytest.fixture
async def runner(
    creator_db: Database, creator_settings: CreatorSettings
) -> AsyncIterator[OpenAIRunner]:
    settings = creator_settings.model_copy(
        update={
            "allow_private_destinations": True,
            "dispatch_max_attempts": 2,
            "engine_deadline_seconds": 1,
        }
    )
    box = fernet_for(settings.secret_key, ENGINE_SECRETS)
    ctx = WorkerContext(settings=settings, db=creator_db, nc=None, js=None)  # type: ignore[arg-type]  # the runner uses neither
    async with httpx.AsyncClient() as client:
        runner = OpenAIRunner(ctx, settings, box, client)
        try:
            yield runner
        finally:
            await runner.stop()


async def deliver(
    creator_db: Database, tenant: UUID, asked: PostGenerationRequested
) -> GenerationJob:
    envelope = new_event(asked, source="planner", tenant_id=tenant, subject=str(asked.post_id))
    async with creator_db.transaction() as session:
        await on_generation_requested(session, envelope)
        query = select(GenerationJob).where(col(GenerationJob.request_id) == asked.request_id)
        job = (await session.scalars(query)).one()
        job.credits = "reserved"  # as billing would (the saga has its own tests)
        return job


async def reread(creator_db: Database, job_id: str) -> GenerationJob:
    async with creator_db.transaction() as session:
        return await session.get_one(GenerationJob, job_id)


async def announced(creator_db: Database, job_id: str) -> list[Envelope]:
    async with creator_db.transaction() as session:
        rows = (await session.execute(select(outbox.c.payload))).all()
    envelopes = [Envelope.model_validate_json(row.payload) for row in rows]
    return [e for e in envelopes if e.subject == job_id]


def test_the_prompt_carries_the_voice_the_limits_and_the_note() -> None:
    system, user = messages_for(request("x", note="Mention the terrace"))

    assert "Tone: warm." in system["content"]
    assert "Never use these words: cheap." in system["content"]
    assert "at most 280 characters including the hashtags" in system["content"]
    assert "language with code es" in system["content"]
    assert "Editor's note for this version: Mention the terrace" in user["content"]
    assert "Brief: Launch the winter blend." in user["content"]


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ('{"text": "Hola", "hashtags": ["#cafe", "cafe"]}', "Hola"),
        ('```json\n{"text": "Hola"}\n```', "Hola"),
        ("Just a plain answer.", "Just a plain answer."),
    ],
)
def test_a_reply_is_read_as_json_fenced_json_or_plain_text(content: str, text: str) -> None:
    parsed = parse_reply(json.dumps(completion(content)).encode(), "instagram")

    assert parsed.text == text
    assert len(parsed.hashtags) <= 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "content",
    [
        "```" + " " * 20_000 + "x",  # cubic for the old fenced-block pattern
        "```json" + "\n" * 20_000 + "x```" + " " * 20_000,
        "```" + "```" * 20_000,
    ],
)
def test_a_reply_built_to_stall_a_pattern_is_read_at_once(content: str) -> None:
    with pytest.raises(EngineFailed, match="characters"):
        parse_reply(json.dumps(completion(content)).encode(), "instagram")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 100_000, "not a chat completion"),  # deeper than the JSON reader goes
        (json.dumps(completion("[" * 100_000)).encode(), "characters"),  # read as plain text
    ],
)
def test_a_deeply_nested_reply_fails_saying_why(raw: bytes, why: str) -> None:
    with pytest.raises(EngineFailed, match=why):
        parse_reply(raw, "instagram")


@pytest.mark.parametrize(
    ("raw", "why", "retryable"),
    [
        (b'{"nothing": []}', "not a chat completion", False),
        (json.dumps(completion("   ")).encode(), "no content", False),
        (json.dumps(completion('{"text": ""}')).encode(), "no text", False),
        (json.dumps(completion("x" * 300)).encode(), "x allows 280", True),
        (json.dumps(completion('{"text": 5}')).encode(), "not valid: text", False),
    ],
)
def test_an_unusable_reply_fails_saying_why(raw: bytes, why: str, retryable: bool) -> None:
    with pytest.raises(EngineFailed, match=why) as caught:
        parse_reply(raw, "x")
    assert caught.value.retryable is retryable


@pytest.mark.usefixtures("on_openai")
async def test_a_job_is_written_by_the_provider_and_announced(
    creator_db: Database, tenant: UUID, provider: Provider, runner: OpenAIRunner
) -> None:
    job = await deliver(creator_db, tenant, request())
    assert job.engine == OPENAI_COMPATIBLE

    await runner.pass_once()
    await runner.idle()

    assert provider.headers[0]["authorization"] == f"Bearer {KEY}"
    assert provider.received[0]["model"] == "gpt-test"
    assert provider.received[0]["response_format"] == {"type": "json_object"}
    done = await reread(creator_db, job.id)
    assert (done.state, done.attempts) == ("completed", 1)
    [answer] = [
        e.payload(ContentGenerated)
        for e in await announced(creator_db, job.id)
        if e.type == ContentGenerated.subject
    ]
    assert answer.content.text == "Café de invierno, ya aquí."
    assert answer.content.hashtags == ["coffee"]


@pytest.mark.usefixtures("on_openai")
async def test_a_refused_key_fails_the_job_at_once_with_the_providers_message(
    creator_db: Database, tenant: UUID, provider: Provider, runner: OpenAIRunner
) -> None:
    provider.status = 401
    job = await deliver(creator_db, tenant, request())

    await runner.pass_once()
    await runner.idle()

    failed = await reread(creator_db, job.id)
    assert failed.state == "failed"
    assert failed.error is not None
    assert "401" in failed.error
    assert "Incorrect API key provided" in failed.error


@pytest.mark.usefixtures("on_openai")
async def test_a_provider_error_is_retried_then_fails_after_the_last_attempt(
    creator_db: Database, tenant: UUID, provider: Provider, runner: OpenAIRunner
) -> None:
    provider.status = 503
    job = await deliver(creator_db, tenant, request())

    await runner.pass_once()
    await runner.idle()
    waiting = await reread(creator_db, job.id)
    assert (waiting.state, waiting.attempts) == ("queued", 1)
    assert waiting.error is not None
    assert "503" in waiting.error

    async with creator_db.transaction() as session:
        row = await session.get_one(GenerationJob, job.id)
        row.next_attempt_at = datetime.now(UTC)  # its turn comes now
    await runner.pass_once()
    await runner.idle()

    failed = await reread(creator_db, job.id)
    assert (failed.state, failed.attempts) == ("failed", 2)
    assert failed.error is not None
    assert "after 2 attempt(s)" in failed.error
    assert len(provider.received) == 2


async def test_an_engine_on_an_internal_address_is_refused_without_a_call(
    provider: Provider,
) -> None:
    endpoint = Endpoint(base_url=provider.base_url, api_key=KEY, model="gpt-test")
    async with httpx.AsyncClient() as client:
        with pytest.raises(EngineFailed) as refused:
            await chat_completion(client, endpoint, [], deadline_seconds=5, allow_private=False)

    assert not refused.value.retryable
    assert "internal" in str(refused.value)
    assert provider.received == []


async def test_the_engine_is_called_at_the_address_that_was_checked(provider: Provider) -> None:
    # A name only our patched resolver knows: reached because the call goes to the checked
    # address with the name as Host, not to a second lookup of the name.
    port = httpx.URL(provider.base_url).port
    endpoint = Endpoint(base_url=f"http://llm.example:{port}/v1", api_key=KEY, model="gpt-test")

    async def resolver(host: str, port: int) -> list[str]:
        assert host == "llm.example"
        return ["127.0.0.1"]

    async with httpx.AsyncClient() as client:
        raw = await chat_completion(
            client, endpoint, [], deadline_seconds=5, allow_private=True, resolver=resolver
        )

    assert json.loads(raw)["object"] == "chat.completion"
    assert provider.headers[-1]["host"] == f"llm.example:{port}"


@pytest.mark.timeout(60)
async def test_an_engine_that_drips_its_answer_is_cut_off_at_the_deadline(
    provider: Provider,
) -> None:
    provider.drip = True
    endpoint = Endpoint(base_url=provider.base_url, api_key=KEY, model="gpt-test")

    async with httpx.AsyncClient() as client:
        with pytest.raises(EngineFailed, match="did not answer within 1 s") as cut:
            await chat_completion(client, endpoint, [], deadline_seconds=1, allow_private=True)

    assert cut.value.retryable


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("on_openai")
async def test_a_job_whose_engine_drips_fails_saying_the_engine_did_not_answer_in_time(
    creator_db: Database, tenant: UUID, provider: Provider, runner: OpenAIRunner
) -> None:
    provider.drip = True
    job = await deliver(creator_db, tenant, request())

    await runner.pass_once()
    await runner.idle()
    async with creator_db.transaction() as session:
        row = await session.get_one(GenerationJob, job.id)
        row.next_attempt_at = datetime.now(UTC)  # its second turn comes now
    await runner.pass_once()
    await runner.idle()

    failed = await reread(creator_db, job.id)
    assert (failed.state, failed.attempts, failed.credits) == ("failed", 2, "pending_release")
    assert failed.error == "after 2 attempt(s): the engine did not answer within 1 s"


# ---- fairness between workspaces, and jobs left mid-call ---------------------------------
async def engine_of(creator_db: Database, box: Fernet, tenant: UUID, base_url: str) -> None:
    """Point ``tenant`` at an OpenAI-compatible engine at ``base_url``."""
    async with creator_db.transaction() as session:
        session.add(
            EngineSettings(
                tenant_id=tenant,
                engine=OPENAI_COMPATIBLE,
                base_url=base_url,
                model="gpt-test",
                api_key=box.encrypt(KEY.encode()),
                accept_secret_header=False,
                deadline_seconds=600,
                updated_by="test",
            )
        )


async def test_jobs_are_claimed_in_turns_across_workspaces_within_each_ones_cap(
    creator_db: Database, engine_box: Fernet, provider: Provider
) -> None:
    busy, other = uuid4(), uuid4()
    for tenant in (busy, other):
        await engine_of(creator_db, engine_box, tenant, provider.base_url)
    many = [await deliver(creator_db, busy, request()) for _ in range(5)]  # due first
    one = await deliver(creator_db, other, request())

    async with creator_db.transaction() as session:
        claimed = await openai_jobs.claim(session, box=engine_box, limit=50, per_workspace=2)
    async with creator_db.transaction() as session:
        again = await openai_jobs.claim(session, box=engine_box, limit=50, per_workspace=2)

    ids = {c.job_id for c in claimed}
    assert len(ids & {j.id for j in many}) == 2
    assert one.id in ids
    assert not {c.job_id for c in again} & {j.id for j in [*many, one]}  # caps are full
    await _end(creator_db, [j.id for j in [*many, one]])


async def test_a_job_left_mid_call_past_its_deadline_is_tried_again_then_failed_once(
    creator_db: Database, engine_box: Fernet, tenant: UUID, provider: Provider
) -> None:
    await engine_of(creator_db, engine_box, tenant, provider.base_url)
    job = await deliver(creator_db, tenant, request())
    left = datetime.now(UTC) - timedelta(minutes=5)  # a worker died mid-call 5 minutes ago
    for attempts, expected in ((1, "queued"), (2, "failed")):
        async with creator_db.transaction() as session:
            row = await session.get_one(GenerationJob, job.id)
            row.state, row.attempts, row.next_attempt_at = "dispatching", attempts, left
        for _ in range(2):  # a second sweep finds nothing more to do
            async with creator_db.transaction() as session:
                await openai_jobs.recover_stuck(
                    session, older_than=timedelta(seconds=90), max_attempts=2
                )

        swept = await reread(creator_db, job.id)
        assert swept.state == expected
    assert swept.credits == "pending_release"
    assert swept.error == "after 2 attempt(s): the engine call was interrupted and did not finish"
    failed = [e for e in await announced(creator_db, job.id) if e.type == ContentFailed.subject]
    assert len(failed) == 1


async def test_a_job_within_its_deadline_is_left_to_its_call(
    creator_db: Database, engine_box: Fernet, tenant: UUID, provider: Provider
) -> None:
    await engine_of(creator_db, engine_box, tenant, provider.base_url)
    job = await deliver(creator_db, tenant, request())
    async with creator_db.transaction() as session:
        row = await session.get_one(GenerationJob, job.id)
        row.state, row.attempts, row.next_attempt_at = "dispatching", 1, datetime.now(UTC)

    async with creator_db.transaction() as session:
        await openai_jobs.recover_stuck(session, older_than=timedelta(seconds=90), max_attempts=2)
        n8n_jobs = n8n.N8nJobs(box=engine_box, callback_base="", max_attempts=1, backoff=(1, 1))
        await n8n_jobs.recover_stuck(session, older_than=timedelta(seconds=0))  # not n8n's

    assert (await reread(creator_db, job.id)).state == "dispatching"
    await _end(creator_db, [job.id])


async def _end(creator_db: Database, job_ids: list[str]) -> None:
    """Leave nothing queued or mid-call for the tests after this one."""
    async with creator_db.transaction() as session:
        await session.execute(
            update(GenerationJob).where(col(GenerationJob.id).in_(job_ids)).values(state="failed")
        )


@dataclass
class HostileEngine:
    """An engine its workspace's owner runs to stall the platform: its first answer is a
    reply built to stall a backtracking pattern, every later one drips for ever."""

    base_url: str = ""
    calls: int = 0


@pytest.fixture
async def hostile_engine() -> AsyncIterator[HostileEngine]:
    state = HostileEngine()

    async def completions(request: Request) -> Response:
        await request.body()
        state.calls += 1
        if state.calls == 1:
            return JSONResponse(completion("```" + " " * 20_000 + "x"))
        return StreamingResponse(dripping_body(), media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    async with served(app) as base:
        state.base_url = f"{base}/v1"
        yield state


@pytest.fixture
async def nc(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="openai-fairness-test")
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.timeout(120)
async def test_a_hostile_engine_holds_up_no_other_workspace(
    creator_db: Database,
    creator_settings: CreatorSettings,
    engine_box: Fernet,
    nc: NatsClient,
    provider: Provider,
    hostile_engine: HostileEngine,
) -> None:
    hostile, neighbour = uuid4(), uuid4()
    await engine_of(creator_db, engine_box, hostile, hostile_engine.base_url)
    await engine_of(creator_db, engine_box, neighbour, provider.base_url)
    async with creator_db.transaction() as session:
        widget = ChatWidget(
            tenant_id=neighbour,
            public_key="wk_" + uuid4().hex,
            name="Neighbour",
            allowed_origins=["https://neighbour.example"],
            greeting="Hi",
            knowledge=[],
            voice={},
            visitor_hourly_limit=10,
            widget_daily_limit=100,
            created_by="test",
        )
        session.add(widget)
    settings = creator_settings.model_copy(
        update={
            "allow_private_destinations": True,
            # Long beside the neighbour's work (a local call), short for a test.
            "engine_deadline_seconds": 8,
            "dispatch_max_attempts": 2,
            "dispatch_backoff_base_seconds": 0.1,
            "dispatch_backoff_cap_seconds": 0.2,
            "dispatch_poll_seconds": 0.1,
        }
    )
    ctx = WorkerContext(settings=settings, db=creator_db, nc=nc, js=nc.jetstream())
    box = fernet_for(settings.secret_key, ENGINE_SECRETS)
    tasks = [openai_calls(ctx, box=box), widget_lookup(ctx)]
    bad = await deliver(creator_db, hostile, request())
    async with asyncio.TaskGroup() as group:
        for task in tasks:
            group.create_task(task)
        try:
            while hostile_engine.calls < 2:  # the bomb has been read; now it drips
                await asyncio.sleep(0.05)
            good = await deliver(creator_db, neighbour, request())
            found = await ask(
                nc, WIDGET_LOOKUP_SUBJECT, WidgetLookup(public_key=widget.public_key), WidgetFound
            )
            written = await _ended(creator_db, good.id)
            meanwhile = await reread(creator_db, bad.id)  # its engine still drips
            failed = await _ended(creator_db, bad.id)
        finally:
            ctx.stop.set()

    assert (found.found, found.tenant_id) == (True, neighbour)
    assert written.state == "completed"
    assert meanwhile.state == "dispatching"
    assert failed.state == "failed"
    assert failed.error == "after 2 attempt(s): the engine did not answer within 8 s"


async def _ended(creator_db: Database, job_id: str) -> GenerationJob:
    while (job := await reread(creator_db, job_id)).state not in ("completed", "failed"):
        await asyncio.sleep(0.1)
    return job
