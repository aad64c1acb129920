"""Planner API shapes."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from bai_platform.validation import NoNul


class Channel(StrEnum):
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    LINKEDIN = "linkedin"
    X = "x"
    TIKTOK = "tiktok"
    BLOG = "blog"
    EMAIL = "email"
    GOOGLE_BUSINESS = "google_business"


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    NoNul,
]
Goal = Annotated[str, StringConstraints(max_length=5000), NoNul]


class CampaignCreate(BaseModel):
    # Unknown fields (tenant_id, state, ...) are refused, never silently applied.
    model_config = ConfigDict(extra="forbid")

    name: Name
    goal: Goal | None = None
    channels: list[Channel] = Field(default_factory=list, max_length=8)
    starts_on: date | None = None
    ends_on: date | None = None

    @field_validator("channels")
    @classmethod
    def _each_channel_once(cls, channels: list[Channel]) -> list[Channel]:
        return list(dict.fromkeys(channels))

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("ends_on must not be before starts_on")
        return self


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    goal: str | None
    channels: list[Channel]
    starts_on: date | None
    ends_on: date | None
    state: str
    created_at: datetime


class CampaignPage(BaseModel):
    items: list[CampaignRead]
    next_cursor: str | None
