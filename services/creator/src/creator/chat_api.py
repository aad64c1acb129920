"""Chat routes: widgets for the team, conversations for website visitors."""

from uuid import UUID

from fastapi import APIRouter, Request, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bai_contracts import CHAT_PATH_PREFIX
from bai_platform.app_state import held, platform_of
from bai_platform.db import ReadSession, Session
from bai_platform.identity import CurrentIdentity, Editor
from bai_platform.openapi_links import ANSWER_ID, leads_to
from bai_platform.secrets import fernet_for
from creator.models import ChatWidget, EngineSettings
from creator.schemas import (
    ConversationRead,
    MessageCreate,
    MessagePage,
    MessageRead,
    ReplyRead,
    WidgetCreate,
    WidgetPage,
    WidgetRead,
    WidgetUpdate,
)
from creator.service import chat, chat_reply
from creator.service.chat_engines import writer_for
from creator.service.engines.config import ENGINE_SECRETS
from creator.state import CreatorState

router = APIRouter(prefix="/v1/creator", tags=["chat"])

# A created widget's id, linked to the operations that take it (bai_platform.openapi_links).
WIDGET_LINKS = leads_to(201, {"widget_id": ANSWER_ID})
WIDGET_READ_LINKS = leads_to(200, {"widget_id": ANSWER_ID})


@router.post("/widgets", status_code=status.HTTP_201_CREATED, responses=WIDGET_LINKS)
async def create_widget(body: WidgetCreate, identity: Editor, session: Session) -> WidgetRead:
    """A chat widget for a website; embed it with its public key."""
    return WidgetRead.model_validate(
        await chat.create_widget(session, identity=identity, data=body)
    )


@router.get("/widgets")
async def list_widgets(identity: CurrentIdentity, session: ReadSession) -> WidgetPage:
    rows = await chat.list_widgets(session, tenant_id=identity.tenant_id)
    return WidgetPage(items=[WidgetRead.model_validate(r) for r in rows])


@router.get("/widgets/{widget_id}", responses=WIDGET_READ_LINKS)
async def get_widget(
    widget_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> WidgetRead:
    widget = await chat.get_widget(session, tenant_id=identity.tenant_id, widget_id=widget_id)
    return WidgetRead.model_validate(widget)


@router.patch("/widgets/{widget_id}", responses=WIDGET_READ_LINKS)
async def update_widget(
    widget_id: UUID, body: WidgetUpdate, identity: Editor, session: Session
) -> WidgetRead:
    widget = await chat.update_widget(session, identity=identity, widget_id=widget_id, data=body)
    return WidgetRead.model_validate(widget)


@router.post("/chat/conversations", status_code=status.HTTP_201_CREATED)
async def start_conversation(identity: CurrentIdentity, session: Session) -> ConversationRead:
    """A website visitor opens a conversation (a visitor token is needed)."""
    conversation, greeting = await chat.start(session, identity=identity)
    return ConversationRead(id=conversation.id, greeting=greeting)


@router.get("/chat/{conversation_id}/messages")
async def conversation_messages(
    conversation_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> MessagePage:
    rows = await chat.messages(session, identity=identity, conversation_id=conversation_id)
    return MessagePage(items=[MessageRead.model_validate(r) for r in rows])


@router.post("/chat/{conversation_id}/messages")
async def send_message(
    conversation_id: UUID, body: MessageCreate, request: Request, identity: CurrentIdentity
) -> ReplyRead:
    """The visitor's message, answered by the workspace's engine (one chat credit).

    No request session: ``chat.reply`` opens short transactions of its own, so no database
    connection waits on the engine."""
    state = held(request, CreatorState)
    settings = state.settings
    box = fernet_for(settings.secret_key, ENGINE_SECRETS)

    def write(widget: ChatWidget, engine: EngineSettings | None) -> chat.Writer:
        return writer_for(
            engine if widget.engine == "workspace" else None,
            box=box,
            client=state.chat_http,
            dispatcher=state.chat_dispatcher,
            # A backstop a second past the chat's own deadline, which answers the visitor.
            deadline_seconds=settings.chat_deadline_seconds + 1,
            allow_private=settings.allow_private_destinations,
        )

    db = platform_of(request).db
    answer = await chat_reply.reply(
        db,
        identity=identity,
        conversation_id=conversation_id,
        text=body.text,
        nc=state.nats.client,
        write=write,
        deadline_seconds=settings.chat_deadline_seconds,
        slots=state.chat_slots,
    )
    return ReplyRead(reply=answer)


class ChatCors:
    """Lets the widget's page read chat answers: echoes its ``Origin`` on chat routes.

    Echoing is safe here because the gateway's ForwardAuth has already refused any
    origin other than the one the visitor token was minted for.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _origin_of(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_cors)


def _origin_of(scope: Scope) -> bytes | None:
    if scope["type"] != "http" or not scope["path"].startswith(CHAT_PATH_PREFIX):
        return None
    return dict(scope["headers"]).get(b"origin")
