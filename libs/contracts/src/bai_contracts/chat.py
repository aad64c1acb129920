"""The chat widget: what the gateway asks creator about a widget, and the visitor token.

A tenant's website loads the widget with its public key (``wk_...``). The gateway mints a
short-lived visitor token for it (``POST /v1/chat/visitor-token``) once creator confirms
the key and that the page's ``Origin`` is one of the widget's allowed origins. ForwardAuth
accepts a visitor token only on ``/v1/creator/chat/`` and only from that origin; services
see the visitor as ``X-BAI-Identity`` subject ``visitor:<widget id>:<visitor id>``, role
``visitor``, scope ``chat``.
"""

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from bai_contracts._base import EventContract

WIDGET_LOOKUP_SUBJECT = "bai.rpc.creator.widget_lookup"
VISITOR_TOKEN_TYPE = "bai-visitor+jwt"
VISITOR_AUDIENCE = "bai-visitor"
VISITOR_ROLE = "visitor"
VISITOR_CREDENTIAL = "visitor"
VISITOR_SCOPE = "chat"
CHAT_PATH_PREFIX = "/v1/creator/chat/"


def visitor_subject(widget_id: UUID | str, visitor_id: str) -> str:
    return f"visitor:{widget_id}:{visitor_id}"


class WidgetLookup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    public_key: str


class WidgetFound(BaseModel):
    """Creator's answer: the widget's workspace and where it may be embedded."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    found: bool
    active: bool = False
    tenant_id: UUID | None = None
    widget_id: UUID | None = None
    allowed_origins: list[str] = []


class ChatReplied(EventContract):
    """A visitor's message got a reply (live events show the conversation to the team)."""

    subject: ClassVar[str] = "bai.creator.chat.replied.v1"

    conversation_id: UUID
    widget_id: UUID
    message: str
    reply: str
    at: datetime
