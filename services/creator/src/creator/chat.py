"""The website chat widget: widgets, visitors' conversations, and replies.

A visitor reaches creator through the gateway with a visitor token: ``X-BAI-Identity``
subject ``visitor:<widget>:<visitor>``, role ``visitor``. A conversation belongs to one
widget and one visitor; nobody else can read or write it. Each reply:

1. counts against the visitor's hourly and the widget's daily message limits (429);
2. holds one ``chat_messages`` credit with billing (refused: 402; billing away: 503);
3. is written by the workspace's engine (built in, OpenAI-compatible, or an n8n workflow
   answering synchronously with ``{"reply": ...}``) from the widget's knowledge and voice;
4. is stored with the visitor's message, announced (``bai.creator.chat.replied.v1``, which
   live events show to the team), and its credit is committed; a failed reply releases it
   and keeps nothing (503 ``reply_failed``; past ``chat_deadline_seconds``, 504
   ``reply_timed_out``).

No database connection is held while billing or the engine is asked (the engine is the
tenant's, and may be slow on purpose): the pool serves everyone else meanwhile.
"""

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from nats.aio.client import Client as NatsClient
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    VISITOR_ROLE,
    ChatReplied,
    CommitCredits,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
    WidgetFound,
    WidgetLookup,
    quota_subject,
)
from bai_platform.db import Database
from bai_platform.envelope import new_event
from bai_platform.errors import (
    Forbidden,
    NotFound,
    ServiceError,
    ServiceUnavailable,
    TooManyRequests,
)
from bai_platform.identity import Identity
from bai_platform.outbox import emit
from bai_platform.rpc import Unreachable, ask
from creator.models import ChatMessage, ChatWidget, Conversation, EngineSettings, outbox
from creator.schemas import WidgetCreate, WidgetUpdate

EDITORS = ("owner", "admin", "editor")
HISTORY = 10
WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
Writer = Callable[[ChatWidget, list[ChatMessage], str], Awaitable[str]]


class WidgetNotFound(NotFound):
    code = "widget_not_found"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class NotAVisitor(Forbidden):
    code = "visitors_only"


class OutOfChatCredits(ServiceError):
    status_code, code = 402, "insufficient_credits"


class ReplyFailed(ServiceUnavailable):
    code = "reply_failed"


class ReplyTimedOut(ServiceError):
    status_code, code = 504, "reply_timed_out"


# ---- widgets (the team) ----------------------------------------------------------------
async def create_widget(
    session: AsyncSession, *, identity: Identity, data: WidgetCreate
) -> ChatWidget:
    identity.require_role(*EDITORS)
    widget = ChatWidget(
        tenant_id=identity.tenant_id,
        public_key="wk_" + secrets.token_urlsafe(18),
        created_by=identity.subject,
        **data.model_dump(mode="json"),
    )
    session.add(widget)
    await session.flush()
    await session.refresh(widget)
    return widget


async def get_widget(session: AsyncSession, *, tenant_id: UUID, widget_id: UUID) -> ChatWidget:
    widget = await session.scalar(
        select(ChatWidget).where(ChatWidget.id == widget_id, ChatWidget.tenant_id == tenant_id)
    )
    if widget is None:
        raise WidgetNotFound("no such chat widget in this workspace")
    return widget


async def list_widgets(session: AsyncSession, *, tenant_id: UUID) -> list[ChatWidget]:
    query = select(ChatWidget).where(ChatWidget.tenant_id == tenant_id)
    return list((await session.scalars(query.order_by(ChatWidget.created_at))).all())


async def update_widget(
    session: AsyncSession, *, identity: Identity, widget_id: UUID, data: WidgetUpdate
) -> ChatWidget:
    identity.require_role(*EDITORS)
    widget = await get_widget(session, tenant_id=identity.tenant_id, widget_id=widget_id)
    for field, value in data.model_dump(exclude_unset=True, mode="json").items():
        if value is not None:
            setattr(widget, field, value)
    widget.updated_at = datetime.now(UTC)
    await session.flush()
    return widget


async def lookup(session: AsyncSession, question: WidgetLookup) -> WidgetFound:
    """The gateway's question before it mints a visitor token."""
    widget = await session.scalar(
        select(ChatWidget).where(ChatWidget.public_key == question.public_key)
    )
    if widget is None:
        return WidgetFound(found=False)
    return WidgetFound(
        found=True,
        active=widget.active,
        tenant_id=widget.tenant_id,
        widget_id=widget.id,
        allowed_origins=widget.allowed_origins,
    )


# ---- conversations (visitors) ----------------------------------------------------------
def visitor_of(identity: Identity) -> tuple[UUID, str]:
    """The widget and the visitor a visitor identity names."""
    kind, _, rest = identity.subject.partition(":")
    widget, _, visitor = rest.partition(":")
    if VISITOR_ROLE not in identity.roles or kind != "visitor" or not visitor:
        raise NotAVisitor("only a website visitor (a visitor token) may chat here")
    try:
        return UUID(widget), identity.subject
    except ValueError as exc:
        raise NotAVisitor("the visitor identity names no widget") from exc


async def start(session: AsyncSession, *, identity: Identity) -> tuple[Conversation, str]:
    widget_id, visitor = visitor_of(identity)
    widget = await _active_widget(session, identity.tenant_id, widget_id)
    conversation = Conversation(tenant_id=identity.tenant_id, widget_id=widget.id, visitor=visitor)
    session.add(conversation)
    await session.flush()
    return conversation, widget.greeting


async def messages(
    session: AsyncSession, *, identity: Identity, conversation_id: UUID
) -> list[ChatMessage]:
    conversation = await _own_conversation(session, identity, conversation_id)
    query = select(ChatMessage).where(ChatMessage.conversation_id == conversation.id)
    return list((await session.scalars(query.order_by(ChatMessage.id))).all())


async def reply(
    db: Database,
    *,
    identity: Identity,
    conversation_id: UUID,
    text: str,
    nc: NatsClient | None,
    write: Callable[[ChatWidget, EngineSettings | None], Writer],
    deadline_seconds: float,
) -> str:
    """Answer the visitor's message, within the limits and the workspace's credits.

    No database connection is held while billing or the engine is asked: one short
    transaction records the message within the limits, the engine writes with no session
    open, and one more stores the reply (or takes the message back when there is none).
    """
    turn = await _take_message(db, identity, conversation_id, text)
    tenant_id = turn.widget.tenant_id
    reference = f"chat_{uuid4().hex}"
    try:
        await _hold_credit(nc, tenant_id, reference)
    except BaseException:
        await _take_back(db, turn.message_id)
        raise
    try:
        answer = await _written(write, turn, text, deadline_seconds)
        async with db.transaction() as session:
            await _keep(session, turn, text, answer)
    except BaseException:  # a failure, the deadline, or the visitor leaving
        await _settle(nc, ReleaseCredits, tenant_id, reference)
        await _take_back(db, turn.message_id)
        raise
    await _settle(nc, CommitCredits, tenant_id, reference)
    return answer


@dataclass(frozen=True, slots=True)
class Turn:
    """What a reply is written from, read in the transaction that took the message."""

    widget: ChatWidget
    conversation: Conversation
    history: list[ChatMessage]
    engine: EngineSettings | None
    message_id: int


async def _take_message(db: Database, identity: Identity, conversation_id: UUID, text: str) -> Turn:
    async with db.transaction() as session:
        conversation = await _own_conversation(session, identity, conversation_id)
        # The widget's row lock makes counting and recording one step, so messages sent
        # at once cannot all pass the limits before any of them is counted.
        widget = await session.get_one(
            ChatWidget, conversation.widget_id, with_for_update=True, populate_existing=True
        )
        await _within_limits(session, widget, conversation.visitor)
        history = await _history(session, conversation.id)
        message = _message(widget, conversation, "visitor", text)
        session.add(message)
        await session.flush()
        engine = await session.get(EngineSettings, widget.tenant_id)
    return Turn(widget, conversation, history, engine, message.id)


async def _written(
    write: Callable[[ChatWidget, EngineSettings | None], Writer],
    turn: Turn,
    text: str,
    deadline_seconds: float,
) -> str:
    """The engine's reply within the deadline (the visitor is waiting for it)."""
    try:
        async with asyncio.timeout(deadline_seconds):
            return await write(turn.widget, turn.engine)(turn.widget, turn.history, text)
    except TimeoutError as exc:
        raise ReplyTimedOut(
            f"the assistant did not answer within {deadline_seconds:g} s; please try again"
        ) from exc
    except Exception as exc:
        raise ReplyFailed("the assistant could not answer right now; please try again") from exc


async def _take_back(db: Database, message_id: int) -> None:
    """A message that got no reply is not kept (nor counted against the limits)."""
    async with db.transaction() as session:
        await session.execute(delete(ChatMessage).where(ChatMessage.id == message_id))


async def _active_widget(session: AsyncSession, tenant_id: UUID, widget_id: UUID) -> ChatWidget:
    widget = await session.get(ChatWidget, widget_id)
    if widget is None or widget.tenant_id != tenant_id or not widget.active:
        raise WidgetNotFound("this chat widget is not available")
    return widget


async def _own_conversation(
    session: AsyncSession, identity: Identity, conversation_id: UUID
) -> Conversation:
    widget_id, visitor = visitor_of(identity)
    conversation = await session.get(Conversation, conversation_id)
    if (
        conversation is None
        or conversation.tenant_id != identity.tenant_id
        or conversation.widget_id != widget_id
        or conversation.visitor != visitor
    ):
        raise ConversationNotFound("no such conversation")
    await _active_widget(session, identity.tenant_id, widget_id)
    return conversation


async def _within_limits(session: AsyncSession, widget: ChatWidget, visitor: str) -> None:
    now = datetime.now(UTC)
    mine = await _count(session, ChatMessage.visitor == visitor, since=now - timedelta(hours=1))
    if mine >= widget.visitor_hourly_limit:
        raise TooManyRequests(
            f"at most {widget.visitor_hourly_limit} messages an hour",
            headers={"Retry-After": "600"},
        )
    everyone = await _count(
        session, ChatMessage.widget_id == widget.id, since=now - timedelta(days=1)
    )
    if everyone >= widget.widget_daily_limit:
        raise TooManyRequests(
            "this chat has answered all it may today", headers={"Retry-After": "3600"}
        )


async def _count(session: AsyncSession, who: ColumnElement[bool], *, since: datetime) -> int:
    query = select(func.count()).where(
        who,
        ChatMessage.role == "visitor",
        ChatMessage.created_at >= since,
    )
    return int(await session.scalar(query) or 0)


async def _hold_credit(nc: NatsClient | None, tenant_id: UUID, reference: str) -> None:
    question = ReserveCredits(
        tenant_id=tenant_id, kind="chat_messages", amount=1, reference=reference
    )
    try:
        answer = await ask(nc, quota_subject("reserve"), question, QuotaAnswer)
    except Unreachable as exc:
        raise ServiceUnavailable("the chat is briefly unavailable; please try again") from exc
    if not answer.ok:
        raise OutOfChatCredits("this chat has no messages left; the team has been told")


async def _settle(
    nc: NatsClient | None,
    model: type[CommitCredits] | type[ReleaseCredits],
    tenant_id: UUID,
    reference: str,
) -> None:
    operation = "commit" if model is CommitCredits else "release"
    question = model(tenant_id=tenant_id, kind="chat_messages", reference=reference)
    try:
        await ask(nc, quota_subject(operation), question, QuotaAnswer)
    except Unreachable:
        # Billing answered the reservation a moment ago; a held credit that is never
        # settled stays visible in the ledger as a reservation (nothing is charged twice).
        return


async def _history(session: AsyncSession, conversation_id: UUID) -> list[ChatMessage]:
    query = (
        select(ChatMessage)
        .where(ChatMessage.conversation_id == conversation_id)
        .order_by(ChatMessage.id.desc())
        .limit(HISTORY)
    )
    return list(reversed((await session.scalars(query)).all()))


async def _keep(session: AsyncSession, turn: Turn, text: str, answer: str) -> None:
    widget, conversation = turn.widget, turn.conversation
    session.add(_message(widget, conversation, "assistant", answer))
    replied = ChatReplied(
        conversation_id=conversation.id,
        widget_id=widget.id,
        message=text,
        reply=answer,
        at=datetime.now(UTC),
    )
    envelope = new_event(
        replied, source="creator", tenant_id=widget.tenant_id, subject=str(conversation.id)
    )
    await emit(session, outbox, envelope)


def _message(widget: ChatWidget, conversation: Conversation, role: str, text: str) -> ChatMessage:
    return ChatMessage(
        tenant_id=widget.tenant_id,
        widget_id=widget.id,
        conversation_id=conversation.id,
        visitor=conversation.visitor,
        role=role,
        text=text,
    )


# ---- the built-in chat engine ----------------------------------------------------------
def builtin_reply(widget: ChatWidget, text: str) -> str:
    """The knowledge snippet that shares most words with the question, or a handover."""
    asked = {w.lower() for w in WORD.findall(text)}
    best, best_score = None, 0
    for snippet in widget.knowledge:
        words = {w.lower() for w in WORD.findall(f"{snippet['title']} {snippet['text']}")}
        score = len(asked & words)
        if score > best_score:
            best, best_score = snippet, score
    tone = (widget.voice.get("tone") or "").lower()
    opener = (
        "Happy to help!" if tone in ("warm", "friendly", "playful") else "Thank you for asking."
    )
    if best is None:
        answer = (
            f"{opener} I don't have that answer here, but our team reads every conversation "
            "and will follow up."
        )
    else:
        answer = f"{opener} {best['text'].strip()}"
    for word in widget.voice.get("avoid", []):
        answer = re.sub(rf"\b{re.escape(word)}\b", "", answer, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", answer).strip()[:2000]
