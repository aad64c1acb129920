"""A visitor's message and its reply. Each reply:

1. counts against the visitor's hourly and the widget's daily message limits (429);
2. holds one ``chat_messages`` credit with billing (refused: 402; billing away: 503);
3. is written by the workspace's engine (built in, OpenAI-compatible, or an n8n workflow
   answering synchronously with ``{"reply": ...}``) from the widget's knowledge and voice,
   within ``chat_deadline_seconds``;
4. is stored with the visitor's message, announced (``bai.creator.chat.replied.v1``, which
   live events show to the team), and its credit is committed; a failed reply releases it
   and keeps nothing (503 ``reply_failed``; past the deadline, 504 ``reply_timed_out``).

No database connection is held while billing or the engine is asked (the engine is the
tenant's, and may be slow on purpose): the pool serves everyone else meanwhile. A
workspace has at most ``chat_workspace_concurrency`` replies being written at once in a
process (``ChatSlots``).
"""

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

from nats.aio.client import Client as NatsClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import (
    ChatReplied,
    CommitCredits,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
    quota_subject,
)
from bai_platform.db import Database
from bai_platform.envelope import new_event
from bai_platform.errors import ServiceError, ServiceUnavailable, TooManyRequests
from bai_platform.identity import Identity
from bai_platform.outbox import emit
from bai_platform.rpc import Unreachable, ask
from creator.models import (
    ChatMessage,
    ChatWidget,
    ChatWidgetDay,
    Conversation,
    EngineSettings,
    outbox,
)
from creator.service.chat import Writer, own_conversation

HISTORY = 10


class OutOfChatCredits(ServiceError):
    status_code, code = 402, "insufficient_credits"


class ReplyFailed(ServiceUnavailable):
    code = "reply_failed"


class ReplyTimedOut(ServiceError):
    status_code, code = 504, "reply_timed_out"


class AssistantBusy(ServiceUnavailable):
    code = "assistant_busy"


class ChatSlots:
    """Replies being written at once, per workspace, in this process.

    A reply waits on the workspace's own engine; without a cap, one workspace's visitors
    (or one visitor with many tokens) could hold every outbound connection and the event
    loop's attention while its engine stalls. Past the cap: 503 with Retry-After, before
    anything is counted, reserved or stored.
    """

    def __init__(self, per_workspace: int) -> None:
        self._per_workspace = per_workspace
        self._busy: Counter[UUID] = Counter()

    @contextmanager
    def slot(self, tenant_id: UUID) -> Iterator[None]:
        if self._busy[tenant_id] >= self._per_workspace:
            raise AssistantBusy(
                "the assistant is answering other visitors; please try again in a moment",
                headers={"Retry-After": "5"},
            )
        self._busy[tenant_id] += 1
        try:
            yield
        finally:
            self._busy[tenant_id] -= 1
            if not self._busy[tenant_id]:
                del self._busy[tenant_id]


async def reply(
    db: Database,
    *,
    identity: Identity,
    conversation_id: UUID,
    text: str,
    nc: NatsClient | None,
    write: Callable[[ChatWidget, EngineSettings | None], Writer],
    deadline_seconds: float,
    slots: ChatSlots,
) -> str:
    """Answer the visitor's message, within the limits and the workspace's credits.

    No database connection is held while billing or the engine is asked: one short
    transaction records the message within the limits, the engine writes with no session
    open, and one more stores the reply (or takes the message back when there is none).
    """
    with slots.slot(identity.tenant_id):
        turn = await _take_message(db, identity, conversation_id, text)
        tenant_id = turn.widget.tenant_id
        reference = f"chat_{uuid4().hex}"
        try:
            await _hold_credit(nc, tenant_id, reference)
        except BaseException:
            await _take_back(db, turn)
            raise
        try:
            answer = await _written(write, turn, text, deadline_seconds)
            async with db.transaction() as session:
                await _keep(session, turn, text, answer)
        except BaseException:  # a failure, the deadline, or the visitor leaving
            await _settle(nc, ReleaseCredits, tenant_id, reference)
            await _take_back(db, turn)
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
    day: date  # the UTC day whose count the message is in


async def _take_message(db: Database, identity: Identity, conversation_id: UUID, text: str) -> Turn:
    async with db.transaction() as session:
        conversation = await own_conversation(session, identity, conversation_id)
        # The widget's row lock makes counting and recording one step, so messages sent
        # at once cannot all pass the limits before any of them is counted.
        widget = await session.get_one(
            ChatWidget, conversation.widget_id, with_for_update=True, populate_existing=True
        )
        day = await _within_limits(session, widget, conversation.visitor)
        history = await _history(session, conversation.id)
        message = _message(widget, conversation, "visitor", text)
        session.add(message)
        await session.flush()
        engine = await session.get(EngineSettings, widget.tenant_id)
    return Turn(widget, conversation, history, engine, message.id, day)


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


async def _take_back(db: Database, turn: Turn) -> None:
    """A message that got no reply is not kept (nor counted against the limits)."""
    async with db.transaction() as session:
        await session.execute(delete(ChatMessage).where(col(ChatMessage.id) == turn.message_id))
        await session.execute(
            update(ChatWidgetDay)
            .where(
                col(ChatWidgetDay.widget_id) == turn.widget.id, col(ChatWidgetDay.day) == turn.day
            )
            .values(messages=col(ChatWidgetDay.messages) - 1)
        )


async def _within_limits(session: AsyncSession, widget: ChatWidget, visitor: str) -> date:
    """Check the visitor's hourly and the widget's daily limit, counting the message in the
    widget's day (undone with the transaction when it is refused); the day it counts in.

    Neither count grows with the widget's traffic: the visitor's stops at the limit, and
    the widget's day is one row.
    """
    now = datetime.now(UTC)
    limit = widget.visitor_hourly_limit
    if (
        await _visitor_messages(session, visitor, since=now - timedelta(hours=1), up_to=limit)
        >= limit
    ):
        raise TooManyRequests(f"at most {limit} messages an hour", headers={"Retry-After": "600"})
    today = now.date()
    if await _count_in_the_day(session, widget.id, today) > widget.widget_daily_limit:
        midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
        raise TooManyRequests(
            "this chat has answered all it may today",
            headers={"Retry-After": str(max(1, int((midnight - now).total_seconds())))},
        )
    return today


async def _visitor_messages(
    session: AsyncSession, visitor: str, *, since: datetime, up_to: int
) -> int:
    """The visitor's messages since ``since``, counted up to ``up_to``."""
    recent = (
        select(col(ChatMessage.id))
        .where(
            col(ChatMessage.visitor) == visitor,
            col(ChatMessage.role) == "visitor",
            col(ChatMessage.created_at) >= since,
        )
        .limit(up_to)
        .subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(recent)) or 0)


async def _count_in_the_day(session: AsyncSession, widget_id: UUID, day: date) -> int:
    """One more message in the widget's day; how many it has now."""
    statement = (
        insert(ChatWidgetDay)
        .values(widget_id=widget_id, day=day, messages=1)
        .on_conflict_do_update(
            index_elements=[col(ChatWidgetDay.widget_id), col(ChatWidgetDay.day)],
            set_={"messages": col(ChatWidgetDay.messages) + 1},
        )
        .returning(col(ChatWidgetDay.messages))
    )
    return int(await session.scalar(statement) or 0)


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
        .where(col(ChatMessage.conversation_id) == conversation_id)
        .order_by(col(ChatMessage.id).desc())
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
