"""Creator API shapes."""

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
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
