"""The website chat widget: widgets for the team, and visitors' conversations.

A visitor reaches creator through the gateway with a visitor token: ``X-BAI-Identity``
subject ``visitor:<widget>:<visitor>``, role ``visitor``. A conversation belongs to one
widget and one visitor; nobody else can read or write it. Replies: ``chat_reply``.
"""

import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import VISITOR_ROLE, WidgetFound, WidgetLookup
from bai_platform.errors import Forbidden, NotFound
from bai_platform.identity import Identity
from creator.models import ChatMessage, ChatWidget, Conversation
from creator.schemas import WidgetCreate, WidgetUpdate

WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
Writer = Callable[[ChatWidget, list[ChatMessage], str], Awaitable[str]]


class WidgetNotFound(NotFound):
    code = "widget_not_found"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class NotAVisitor(Forbidden):
    code = "visitors_only"


# ---- widgets (the team) ----------------------------------------------------------------
async def create_widget(
    session: AsyncSession, *, identity: Identity, data: WidgetCreate
) -> ChatWidget:
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
        select(ChatWidget).where(
            col(ChatWidget.id) == widget_id, col(ChatWidget.tenant_id) == tenant_id
        )
    )
    if widget is None:
        raise WidgetNotFound("no such chat widget in this workspace")
    return widget


async def list_widgets(session: AsyncSession, *, tenant_id: UUID) -> list[ChatWidget]:
    query = select(ChatWidget).where(col(ChatWidget.tenant_id) == tenant_id)
    return list((await session.scalars(query.order_by(col(ChatWidget.created_at)))).all())


async def update_widget(
    session: AsyncSession, *, identity: Identity, widget_id: UUID, data: WidgetUpdate
) -> ChatWidget:
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
        select(ChatWidget).where(col(ChatWidget.public_key) == question.public_key)
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
    conversation = await own_conversation(session, identity, conversation_id)
    query = select(ChatMessage).where(col(ChatMessage.conversation_id) == conversation.id)
    return list((await session.scalars(query.order_by(col(ChatMessage.id)))).all())


async def _active_widget(session: AsyncSession, tenant_id: UUID, widget_id: UUID) -> ChatWidget:
    widget = await session.get(ChatWidget, widget_id)
    if widget is None or widget.tenant_id != tenant_id or not widget.active:
        raise WidgetNotFound("this chat widget is not available")
    return widget


async def own_conversation(
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
