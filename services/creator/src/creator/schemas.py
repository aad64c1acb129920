"""Creator API shapes."""

import re
from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    UrlConstraints,
)

from bai_contracts import GeneratedContent
from bai_platform.validation import NoNul


class CampaignBriefRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    campaign_id: UUID
    name: str
    goal: str | None
    channels: list[str]
    starts_on: date | None
    ends_on: date | None
    received_at: datetime


class GenerationJobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    post_id: UUID
    campaign_id: UUID
    channel: str
    engine: str
    state: str
    attempts: int
    error: str | None
    created_at: datetime
    completed_at: datetime | None


class ContentVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    job_id: str
    engine: str
    content: GeneratedContent
    created_at: datetime


class ContentVersions(BaseModel):
    items: list[ContentVersionRead]


Secret = Annotated[str, StringConstraints(min_length=16, max_length=500), NoNul]


class N8nEngine(BaseModel):
    """The tenant's n8n workflow: dispatch signed to its webhook, results by callback."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["n8n"]
    webhook_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
    secret: Secret
    # The original system's shared-secret header, for workflows not signing yet.
    accept_secret_header: bool = False
    # No callback within this long: the job times out (its credits go back).
    deadline_seconds: int = Field(default=600, ge=30, le=86_400)


class OpenAICompatibleEngine(BaseModel):
    """Chat completions over HTTP (OpenAI, or any server speaking its protocol)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["openai_compatible"]
    base_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
    model: Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
    api_key: Annotated[str, StringConstraints(min_length=1, max_length=500), NoNul]


class BuiltinEngine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["builtin"]


class EngineUpdate(RootModel[BuiltinEngine | N8nEngine | OpenAICompatibleEngine]):
    root: Annotated[BuiltinEngine | N8nEngine | OpenAICompatibleEngine, Field(discriminator="type")]


class EngineRead(BaseModel):
    """The tenant's engine; secrets and keys are never shown again."""

    type: str
    webhook_url: str | None = None
    accept_secret_header: bool = False
    deadline_seconds: int | None = None
    base_url: str | None = None
    model: str | None = None
    updated_at: datetime | None = None


# ---- chat ------------------------------------------------------------------------------
ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")


def _origin(value: str) -> str:
    normalised = value.strip().lower().rstrip("/")
    if not ORIGIN.match(normalised):
        raise ValueError("must be an origin such as https://www.example.com (no path)")
    return normalised


# The pattern is documented (clients, and the fuzz's generator, then send origins); _origin
# also takes one in capitals or with a trailing slash, and says what is wrong in words.
Origin = Annotated[
    str,
    StringConstraints(max_length=300),
    AfterValidator(_origin),
    Field(json_schema_extra={"pattern": ORIGIN.pattern, "examples": ["https://www.example.com"]}),
]
Snippet = Annotated[str, StringConstraints(min_length=1, max_length=4000), NoNul]


class KnowledgeSnippet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
    text: Snippet


class ChatVoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tone: Annotated[str, StringConstraints(max_length=200), NoNul] | None = None
    avoid: list[Annotated[str, StringConstraints(min_length=1, max_length=100), NoNul]] = Field(
        default_factory=list, max_length=50
    )


class WidgetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul
    ]
    allowed_origins: list[Origin] = Field(min_length=1, max_length=20)
    greeting: Annotated[str, StringConstraints(min_length=1, max_length=1000), NoNul] = (
        "Hello! How can we help?"
    )
    knowledge: list[KnowledgeSnippet] = Field(default_factory=list, max_length=100)
    voice: ChatVoice = Field(default_factory=ChatVoice)
    # Which engine answers: the workspace's (default) or the built-in one from knowledge.
    engine: Literal["workspace", "builtin"] = "workspace"
    visitor_hourly_limit: int = Field(default=30, ge=1, le=10_000)
    widget_daily_limit: int = Field(default=2000, ge=1, le=1_000_000)


class WidgetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul
        ]
        | None
    ) = None
    allowed_origins: list[Origin] | None = Field(default=None, min_length=1, max_length=20)
    greeting: Annotated[str, StringConstraints(min_length=1, max_length=1000), NoNul] | None = None
    knowledge: list[KnowledgeSnippet] | None = Field(default=None, max_length=100)
    voice: ChatVoice | None = None
    engine: Literal["workspace", "builtin"] | None = None
    active: bool | None = None
    visitor_hourly_limit: int | None = Field(default=None, ge=1, le=10_000)
    widget_daily_limit: int | None = Field(default=None, ge=1, le=1_000_000)


class WidgetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    public_key: str
    name: str
    allowed_origins: list[str]
    greeting: str
    knowledge: list[KnowledgeSnippet]
    voice: ChatVoice
    engine: str
    active: bool
    visitor_hourly_limit: int
    widget_daily_limit: int
    created_at: datetime


class WidgetPage(BaseModel):
    items: list[WidgetRead]


class ConversationRead(BaseModel):
    id: UUID
    greeting: str


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), NoNul
    ]


class ReplyRead(BaseModel):
    reply: str


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    role: str
    text: str
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessageRead]
