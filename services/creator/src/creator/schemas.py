"""Creator API shapes."""

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from bai_contracts import GeneratedContent


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
