"""The website chat: widgets for the team; conversations and replies for visitors, within
limits and chat credits."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from sqlalchemy import func, select
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bai_contracts import ChatReplied, WidgetLookup, visitor_subject
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.identity import IDENTITY_HEADER, mint_identity
from bai_platform.messaging import connect
from bai_testing.billing import BillingStandIn, billing_stand_in
from bai_testing.plugin import TEST_KID, trusting_client
from bai_testing.servers import dripping_body, served
from creator.app import create_app
from creator.models import ChatMessage, ChatWidget, ChatWidgetDay, EngineSettings, outbox
from creator.service import chat
from creator.settings import CreatorSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]
KNOWLEDGE: list[dict[str, Any]] = [
    {"title": "Opening hours", "text": "We open every day from 8:00 to 20:00."},
    {"title": "Delivery", "text": "We deliver coffee beans within the city in two days."},
]
WIDGET = {
    "name": "Acme site",
    "allowed_origins": ["https://www.acme.example", "HTTP://localhost:3000/"],
    "greeting": "Hi! Ask us anything.",
    "knowledge": KNOWLEDGE,
    "voice": {"tone": "warm", "avoid": ["cheap"]},
    "visitor_hourly_limit": 3,
}


@pytest.fixture
async def nc(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="chat-test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def billing(nc: NatsClient) -> AsyncIterator[BillingStandIn]:
    async with billing_stand_in(nc) as stand_in:
        yield stand_in


@pytest.fixture
def visitor(signing_key: Ed25519PrivateKey) -> Callable[[UUID, str, str], dict[str, str]]:
    """Headers of a website visitor of ``widget`` (what the gateway mints from a visitor token)."""

    def headers(tenant_id: UUID, widget_id: str, visitor_id: str = "vis_one") -> dict[str, str]:
        token = mint_identity(
            key=signing_key,
            kid=TEST_KID,
            issuer="bai-gateway",
            audience="bai-creator",
            subject=visitor_subject(widget_id, visitor_id),
            tenant_id=tenant_id,
            roles=["visitor"],
            scopes=["chat"],
            credential="visitor",
        )
        return {IDENTITY_HEADER: token}

    return headers


Visitor = Callable[..., dict[str, str]]


async def new_widget(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    response = await client.post("/v1/creator/widgets", json=WIDGET, headers=headers)
    assert response.status_code == 201, response.text
    widget: dict[str, object] = response.json()
    return widget


@dataclass
class Conversation:
    """A visitor's conversation: what starting it answered, and the visitor's messages."""

    client: httpx.AsyncClient
    visitor: dict[str, str]
    started: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.started["id"])

    @property
    def messages(self) -> str:
        return f"/v1/creator/chat/{self.id}/messages"

    async def say(self, text: str = "Hi", headers: dict[str, str] | None = None) -> httpx.Response:
        """The visitor (or whoever ``headers`` name) writes ``text`` in the conversation."""
        return await self.client.post(
            self.messages, json={"text": text}, headers=headers or self.visitor
        )


async def start_conversation(client: httpx.AsyncClient, visitor: dict[str, str]) -> Conversation:
    started = await client.post("/v1/creator/chat/conversations", headers=visitor)
    return Conversation(client, visitor, started.json())


OpenConversation = Callable[[httpx.AsyncClient], Awaitable[Conversation]]


@pytest.fixture
def open_conversation(
    tenant: UUID, identity_for: IdentityFor, visitor: Visitor
) -> OpenConversation:
    """An editor of the test's workspace makes a widget on ``client``'s app, and a visitor
    of it starts a conversation."""

    async def open_(client: httpx.AsyncClient) -> Conversation:
        widget = await new_widget(client, identity_for(tenant, "editor"))
        return await start_conversation(client, visitor(tenant, widget["id"]))

    return open_


def billing_asked(billing: BillingStandIn, tenant: UUID) -> list[tuple[str, dict[str, object]]]:
    """What billing was asked for the workspace, in order."""
    return [(op, body) for op, body in billing.asked if body["tenant_id"] == str(tenant)]


def billing_ops(billing: BillingStandIn, tenant: UUID) -> list[str]:
    return [op for op, _ in billing_asked(billing, tenant)]


async def test_a_widget_gets_a_public_key_and_normalised_origins(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    widget = await new_widget(client, identity_for(tenant, "editor"))

    assert str(widget["public_key"]).startswith("wk_")
    assert widget["allowed_origins"] == ["https://www.acme.example", "http://localhost:3000"]


@pytest.mark.parametrize(
    "origins", [["https://acme.example/path"], ["javascript:alert(1)"], ["*"], []]
)
async def test_a_widget_needs_real_origins(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, origins: list[str]
) -> None:
    body = {**WIDGET, "allowed_origins": origins}

    response = await client.post(
        "/v1/creator/widgets", json=body, headers=identity_for(tenant, "editor")
    )

    assert response.status_code == 422


async def test_viewers_cannot_make_widgets_and_other_workspaces_cannot_see_them(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    refused = await client.post(
        "/v1/creator/widgets", json=WIDGET, headers=identity_for(tenant, "viewer")
    )
    widget = await new_widget(client, identity_for(tenant, "owner"))
    hidden = await client.get(
        f"/v1/creator/widgets/{widget['id']}",
        headers=identity_for(UUID(int=tenant.int ^ 1), "owner"),
    )

    assert (refused.status_code, hidden.status_code) == (403, 404)


async def test_the_gateway_learns_a_widgets_workspace_and_origins(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, creator_db: Database
) -> None:
    widget = await new_widget(client, identity_for(tenant, "editor"))

    async with creator_db.transaction() as session:
        found = await chat.lookup(session, WidgetLookup(public_key=str(widget["public_key"])))
        unknown = await chat.lookup(session, WidgetLookup(public_key="wk_nobody"))

    assert (found.found, found.active, found.tenant_id) == (True, True, tenant)
    assert found.allowed_origins == ["https://www.acme.example", "http://localhost:3000"]
    assert not unknown.found


@pytest.mark.usefixtures("billing")
async def test_a_visitor_is_greeted_and_answered_from_the_widgets_knowledge(
    client: httpx.AsyncClient, open_conversation: OpenConversation, creator_db: Database
) -> None:
    conversation = await open_conversation(client)
    answer = await conversation.say("When do you open?")

    assert conversation.started["greeting"] == "Hi! Ask us anything."
    assert answer.status_code == 200, answer.text
    assert answer.json()["reply"] == "Happy to help! We open every day from 8:00 to 20:00."
    history = await client.get(conversation.messages, headers=conversation.visitor)
    assert [m["role"] for m in history.json()["items"]] == ["visitor", "assistant"]
    async with creator_db.transaction() as session:
        rows = (await session.execute(select(outbox.c.payload))).all()
    replies = [
        e
        for e in (Envelope.model_validate_json(r.payload) for r in rows)
        if e.type == ChatReplied.subject and e.subject == conversation.id
    ]
    assert len(replies) == 1


async def test_each_reply_holds_and_commits_one_chat_credit(
    client: httpx.AsyncClient,
    tenant: UUID,
    open_conversation: OpenConversation,
    billing: BillingStandIn,
) -> None:
    conversation = await open_conversation(client)

    await conversation.say()

    mine = billing_asked(billing, tenant)
    assert [op for op, _ in mine] == ["reserve", "commit"]
    assert mine[0][1]["kind"] == "chat_messages"
    assert mine[0][1]["reference"] == mine[1][1]["reference"]


async def test_without_chat_credits_the_visitor_gets_402_and_nothing_is_stored(
    client: httpx.AsyncClient,
    open_conversation: OpenConversation,
    billing: BillingStandIn,
    creator_db: Database,
) -> None:
    billing.refuse = True
    conversation = await open_conversation(client)

    answer = await conversation.say()

    assert (answer.status_code, answer.json()["code"]) == (402, "insufficient_credits")
    assert await _messages(creator_db, conversation.id) == 0


async def test_with_billing_away_the_visitor_gets_503_and_nothing_is_stored(
    client: httpx.AsyncClient, open_conversation: OpenConversation, creator_db: Database
) -> None:
    conversation = await open_conversation(client)

    answer = await conversation.say()

    assert answer.status_code == 503
    assert await _messages(creator_db, conversation.id) == 0


@pytest.mark.usefixtures("billing")
async def test_a_visitor_over_the_hourly_limit_gets_429_with_retry_after(
    client: httpx.AsyncClient, open_conversation: OpenConversation
) -> None:
    conversation = await open_conversation(client)

    answers = [await conversation.say(f"Hi {n}") for n in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert "retry-after" in answers[-1].headers


async def _widget_with_a_daily_limit(
    client: httpx.AsyncClient, headers: dict[str, str], limit: int
) -> str:
    body = {**WIDGET, "engine": "builtin", "widget_daily_limit": limit}
    response = await client.post("/v1/creator/widgets", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _day_count(creator_db: Database, widget_id: str, day: date) -> int | None:
    async with creator_db.transaction() as session:
        row = await session.get(ChatWidgetDay, (UUID(widget_id), day))
        return None if row is None else row.messages


@pytest.mark.usefixtures("billing")
async def test_a_widget_over_its_daily_limit_gets_429_until_the_next_utc_day(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    visitor: Visitor,
    creator_db: Database,
) -> None:
    widget_id = await _widget_with_a_daily_limit(client, identity_for(tenant, "editor"), 2)
    visitors = [f"vis_{n}" for n in range(3)]  # each far below the hourly limit
    conversations = [
        await start_conversation(client, visitor(tenant, widget_id, v)) for v in visitors
    ]

    answers = [await c.say() for c in conversations]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1].json()["detail"] == "this chat has answered all it may today"
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), time(), UTC)
    assert 0 < int(answers[-1].headers["retry-after"]) <= (midnight - now).total_seconds() + 1
    assert await _day_count(creator_db, widget_id, now.date()) == 2  # the refusal not counted
    assert await _messages(creator_db, conversations[-1].id) == 0


@pytest.mark.usefixtures("billing")
async def test_yesterdays_messages_do_not_count_against_today(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    visitor: Visitor,
    creator_db: Database,
) -> None:
    widget_id = await _widget_with_a_daily_limit(client, identity_for(tenant, "editor"), 1)
    today = datetime.now(UTC).date()
    async with creator_db.transaction() as session:
        session.add(
            ChatWidgetDay(widget_id=UUID(widget_id), day=today - timedelta(days=1), messages=1)
        )
    conversation = await start_conversation(client, visitor(tenant, widget_id))

    answers = [await conversation.say(f"Hi {n}") for n in range(2)]

    assert [a.status_code for a in answers] == [200, 429]
    assert await _day_count(creator_db, widget_id, today) == 1


async def test_a_message_without_a_reply_is_not_counted_in_the_widgets_day(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    visitor: Visitor,
    creator_db: Database,
) -> None:
    """Billing away: the message is taken back, and so is its place in the day's count."""
    widget_id = await _widget_with_a_daily_limit(client, identity_for(tenant, "editor"), 1)
    conversation = await start_conversation(client, visitor(tenant, widget_id))

    answer = await conversation.say()

    assert answer.status_code == 503
    assert await _day_count(creator_db, widget_id, datetime.now(UTC).date()) == 0


@pytest.mark.usefixtures("billing")
async def test_a_conversation_is_its_visitors_alone(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, visitor: Visitor
) -> None:
    widget = await new_widget(client, identity_for(tenant, "editor"))
    conversation = await start_conversation(client, visitor(tenant, widget["id"]))

    stranger = await client.get(
        conversation.messages, headers=visitor(tenant, widget["id"], "vis_two")
    )
    other_tenant = await client.get(
        conversation.messages, headers=visitor(UUID(int=tenant.int ^ 1), widget["id"])
    )
    team = await conversation.say(headers=identity_for(tenant, "owner"))

    assert (stranger.status_code, other_tenant.status_code, team.status_code) == (404, 404, 403)


@pytest.mark.usefixtures("billing")
async def test_an_inactive_widget_takes_no_new_conversations(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, visitor: Visitor
) -> None:
    widget = await new_widget(client, identity_for(tenant, "editor"))
    await client.patch(
        f"/v1/creator/widgets/{widget['id']}",
        json={"active": False},
        headers=identity_for(tenant, "editor"),
    )

    response = await client.post(
        "/v1/creator/chat/conversations", headers=visitor(tenant, widget["id"])
    )

    assert response.status_code == 404


def test_the_builtin_reply_hands_over_when_the_knowledge_is_silent() -> None:
    widget = ChatWidget(
        tenant_id=uuid4(),
        public_key="cw_test",
        name="Acme",
        allowed_origins=[],
        greeting="Hi",
        knowledge=KNOWLEDGE,
        voice={"tone": "formal"},
        visitor_hourly_limit=3,
        widget_daily_limit=100,
        created_by="test",
    )

    answer = chat.builtin_reply(widget, "Do you sell cheap tea?")

    assert answer.startswith("Thank you for asking.")
    assert "team" in answer


async def _messages(creator_db: Database, conversation: str) -> int:
    async with creator_db.transaction() as session:
        query = select(func.count()).where(col(ChatMessage.conversation_id) == UUID(conversation))
        return int(await session.scalar(query) or 0)


@pytest.mark.usefixtures("billing")
async def test_chat_answers_carry_the_pages_origin_so_the_widget_can_read_them(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor, visitor: Visitor
) -> None:
    widget = await new_widget(client, identity_for(tenant, "editor"))
    headers = {**visitor(tenant, widget["id"]), "Origin": "https://www.acme.example"}

    started = await client.post("/v1/creator/chat/conversations", headers=headers)
    team = await client.get(
        "/v1/creator/widgets",
        headers={**identity_for(tenant, "owner"), "Origin": "https://x.example"},
    )

    assert started.headers["access-control-allow-origin"] == "https://www.acme.example"
    assert started.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in team.headers


@pytest.mark.usefixtures("billing")
async def test_a_widget_on_the_builtin_engine_answers_even_when_the_workspace_engine_is_down(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    visitor: Visitor,
    creator_db: Database,
    engine_box: Fernet,
) -> None:
    await _on_engine(creator_db, engine_box, tenant, "http://127.0.0.1:9/v1")  # nobody answers
    editor = identity_for(tenant, "editor")
    on_workspace = await new_widget(client, editor)
    builtin = (
        await client.post(
            "/v1/creator/widgets", json={**WIDGET, "engine": "builtin"}, headers=editor
        )
    ).json()

    answers = []
    for widget in (builtin, on_workspace):
        conversation = await start_conversation(client, visitor(tenant, widget["id"]))
        answers.append(await conversation.say("When do you open?"))

    assert answers[0].status_code == 200
    assert "8:00 to 20:00" in answers[0].json()["reply"]
    assert answers[1].status_code == 503
    assert answers[1].json()["code"] == "reply_failed"


# ---- a hostile engine: the deadline, and no database connection held while it writes ----
@dataclass
class SlowEngine:
    """An OpenAI-compatible stand-in that takes the visitor's question and never finishes
    its answer (it drips one byte at a time, each well within a read timeout)."""

    base_url: str = ""
    asked: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def slow_engine() -> AsyncIterator[SlowEngine]:
    state = SlowEngine()

    async def completions(request: Request) -> Response:
        await request.body()
        state.asked.set()
        return StreamingResponse(dripping_body(), media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    async with served(app) as base:
        state.base_url = f"{base}/v1"
        yield state


@pytest.fixture
async def one_connection_client(
    creator_settings: CreatorSettings, signing_key: Ed25519PrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a pool of one database connection, a 2 s chat deadline and one reply
    in flight per workspace."""
    settings = creator_settings.model_copy(
        update={
            "allow_private_destinations": True,
            "chat_workspace_concurrency": 1,
            "db_pool_size": 1,
            "db_max_overflow": 0,
            "db_pool_timeout_seconds": 1,
            "chat_deadline_seconds": 2,
        }
    )
    async with trusting_client(create_app(settings), signing_key) as http:
        yield http


async def _on_engine(
    creator_db: Database, box: Fernet, tenant: UUID, base_url: str, *, n8n: bool = False
) -> None:
    """The workspace's engine: OpenAI-compatible at ``base_url``, or an n8n workflow there."""
    async with creator_db.transaction() as session:
        session.add(
            EngineSettings(
                tenant_id=tenant,
                engine="n8n" if n8n else "openai_compatible",
                webhook_url=f"{base_url}/chat/completions" if n8n else None,
                base_url=None if n8n else base_url,
                model=None if n8n else "gpt-test",
                api_key=None if n8n else box.encrypt(b"sk-test"),
                secret=box.encrypt(b"whsec-0123456789abcdef") if n8n else None,
                accept_secret_header=False,
                deadline_seconds=600,
                updated_by="test",
            )
        )


OnSlowEngine = Callable[..., Awaitable[None]]


@pytest.fixture
def on_slow_engine(
    creator_db: Database, engine_box: Fernet, tenant: UUID, slow_engine: SlowEngine
) -> OnSlowEngine:
    """The test's workspace answers with the slow engine (an n8n workflow there with ``n8n``)."""

    async def use(*, n8n: bool = False) -> None:
        await _on_engine(creator_db, engine_box, tenant, slow_engine.base_url, n8n=n8n)

    return use


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n8n", [False, True], ids=["openai_compatible", "n8n"])
async def test_a_reply_past_the_deadline_answers_504_releases_its_credit_and_keeps_nothing(
    n8n: bool,
    one_connection_client: httpx.AsyncClient,
    tenant: UUID,
    open_conversation: OpenConversation,
    billing: BillingStandIn,
    creator_db: Database,
    on_slow_engine: OnSlowEngine,
) -> None:
    await on_slow_engine(n8n=n8n)
    conversation = await open_conversation(one_connection_client)

    answer = await conversation.say()

    assert answer.status_code == 504, answer.text
    assert answer.json()["code"] == "reply_timed_out"
    assert "did not answer within 2 s" in answer.json()["detail"]
    assert billing_ops(billing, tenant) == ["reserve", "release"]
    assert await _messages(creator_db, conversation.id) == 0


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("billing")
async def test_while_an_engine_writes_a_reply_the_app_holds_no_database_connection(
    one_connection_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    open_conversation: OpenConversation,
    slow_engine: SlowEngine,
    on_slow_engine: OnSlowEngine,
) -> None:
    await on_slow_engine()
    client = one_connection_client
    conversation = await open_conversation(client)
    waiting = asyncio.create_task(conversation.say())
    await asyncio.wait_for(slow_engine.asked.wait(), 30)

    # The pool has one connection: this is served only if the chat is not sitting on it.
    team = await client.get("/v1/creator/widgets", headers=identity_for(tenant, "owner"))

    assert team.status_code == 200, team.text
    assert (await waiting).status_code == 504


@pytest.mark.timeout(120)
async def test_a_workspace_at_its_chat_cap_answers_503_busy_and_spends_nothing(
    one_connection_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    visitor: Visitor,
    billing: BillingStandIn,
    creator_db: Database,
    slow_engine: SlowEngine,
    on_slow_engine: OnSlowEngine,
) -> None:
    await on_slow_engine()
    client = one_connection_client  # one reply in flight per workspace
    widget = await new_widget(client, identity_for(tenant, "editor"))
    first = await start_conversation(client, visitor(tenant, widget["id"]))
    second = await start_conversation(client, visitor(tenant, widget["id"], "vis_two"))
    waiting = asyncio.create_task(first.say())
    await asyncio.wait_for(slow_engine.asked.wait(), 30)

    busy = await second.say()

    assert busy.status_code == 503, busy.text
    assert busy.json()["code"] == "assistant_busy"
    assert "retry-after" in busy.headers
    assert (await waiting).status_code == 504
    assert billing_ops(billing, tenant) == ["reserve", "release"]  # the first message's only
    assert await _messages(creator_db, second.id) == 0
