"""Planner API shapes: ``XCreate`` / ``XUpdate`` in, ``XRead`` out, pages with a cursor."""

import math
import re
from datetime import date, datetime, time
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, Self
from uuid import UUID
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bai_platform.destinations import without_credentials
from bai_platform.validation import NoNul
from planner.service.calendar import month_bounds


class Channel(StrEnum):
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    LINKEDIN = "linkedin"
    X = "x"
    TIKTOK = "tiktok"
    BLOG = "blog"
    EMAIL = "email"
    GOOGLE_BUSINESS = "google_business"


class PostState(StrEnum):
    PLANNED = "planned"
    GENERATING = "generating"
    DRAFT_READY = "draft_ready"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    PUBLISHED = "published"
    FAILED = "failed"
    REJECTED = "rejected"


class CampaignState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


def _strict(*, max_length: int, min_length: int = 0) -> Any:
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        NoNul,
    ]


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
LongText = Annotated[str, StringConstraints(max_length=5000), NoNul]
Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul]
Example = Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), NoNul]
Hashtag = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^#?\w{1,100}$")]


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _known_zone(name: str) -> str:
    if name not in _zones() or name == "localtime":
        raise ValueError("must be an IANA time zone such as Europe/Madrid")
    return name


def _month(value: str) -> str:
    if not MONTH.match(value):
        raise ValueError("must be a month as YYYY-MM")
    month_bounds(value)  # the calendar's own rules too (year 0001 or later), or a 500 later
    return value


# The format is documented (clients, and the fuzz's generator, then send zones); _known_zone
# checks it with a message people can read.
TimeZone = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(_known_zone),
    Field(json_schema_extra={"format": "time-zone", "examples": ["Europe/Madrid"]}),
]
# The pattern is documented (clients and fuzzers then send months); _month checks it with a
# message people can read.
Month = Annotated[
    str,
    StringConstraints(max_length=7),
    AfterValidator(_month),
    Field(json_schema_extra={"pattern": MONTH.pattern, "examples": ["2026-12"]}),
]


# ---- brands ----------------------------------------------------------------------------
class Voice(BaseModel):
    """A brand's voice: it travels with every generation request."""

    model_config = ConfigDict(extra="forbid")

    tone: Annotated[str, StringConstraints(max_length=200), NoNul] | None = None
    audience: Annotated[str, StringConstraints(max_length=500), NoNul] | None = None
    values: list[Word] = Field(default_factory=list, max_length=30)
    keywords: list[Word] = Field(default_factory=list, max_length=50)
    avoid: list[Word] = Field(default_factory=list, max_length=50)
    examples: list[Example] = Field(default_factory=list, max_length=10)
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = None


class BrandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    timezone: TimeZone = "UTC"
    default_channels: list[Channel] = Field(default_factory=list, max_length=8)
    voice: Voice = Field(default_factory=Voice)

    @field_validator("default_channels")
    @classmethod
    def _each_channel_once(cls, channels: list[Channel]) -> list[Channel]:
        return list(dict.fromkeys(channels))


class BrandUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    timezone: TimeZone | None = None
    default_channels: list[Channel] | None = Field(default=None, max_length=8)
    voice: Voice | None = None


class BrandRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    timezone: str
    default_channels: list[Channel]
    voice: Voice
    created_at: datetime
    updated_at: datetime


class BrandPage(BaseModel):
    items: list[BrandRead]
    next_cursor: str | None


def exactly_one_of(**members: str) -> dict[str, Any]:
    """JSON Schema for a model validator's "give exactly one of": one of ``members`` (name:
    its JSON type) is there and not null, and none of the others. The document then says
    what the validator takes, and clients and fuzzers send it."""
    return {
        "oneOf": [
            {"required": [name], "properties": {name: {"type": json_type}}}
            for name, json_type in members.items()
        ]
    }


# ---- campaigns -------------------------------------------------------------------------
class Cadence(BaseModel):
    """How often a channel posts: ``per_week`` or ``per_day``, on preferred days and times.
    At most 7 posts fall on one day (``per_week`` spread over the distinct ``weekdays``, or
    all seven), and given ``times`` hold at least as many distinct times as that day's posts."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of(per_week="integer", per_day="integer")
    )

    per_week: int | None = Field(default=None, ge=1, le=49)
    per_day: int | None = Field(default=None, ge=1, le=7)
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list, max_length=7
    )
    times: list[time] = Field(default_factory=list, max_length=7)

    @model_validator(mode="after")
    def _fits_in_a_day(self) -> Self:
        if (self.per_week is None) == (self.per_day is None):
            raise ValueError("give exactly one of per_week and per_day")
        days = len(set(self.weekdays)) or 7
        busiest = self.per_day or math.ceil((self.per_week or 0) / days)
        if busiest > 7:
            raise ValueError(f"{busiest} posts on one day; the cadence allows at most 7 per day")
        if self.times and len(set(self.times)) < busiest:
            raise ValueError(f"{busiest} posts fall on one day but only {len(self.times)} times")
        return self


DEFAULT_CADENCE = Cadence(per_week=3)


class CampaignCreate(BaseModel):
    # Unknown fields (tenant_id, state, ...) are refused, never silently applied.
    model_config = ConfigDict(extra="forbid")

    brand_id: UUID
    name: Name
    goal: LongText | None = None
    brief: LongText | None = None
    channels: list[Channel] = Field(default_factory=list, max_length=8)
    starts_on: date | None = None
    ends_on: date | None = None
    cadence: dict[Channel, Cadence] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _each_channel_once(cls, channels: list[Channel]) -> list[Channel]:
        return list(dict.fromkeys(channels))

    @field_validator("cadence")
    @classmethod
    def _cadence_of_used_channels(
        cls, cadence: dict[Channel, Cadence], info: ValidationInfo
    ) -> dict[Channel, Cadence]:
        # An empty channel list takes the brand's defaults later; it is checked then.
        channels = info.data.get("channels") or list(Channel)
        stray = [c.value for c in cadence if c not in channels]
        if stray:
            raise ValueError(f"names channels the campaign does not use: {stray}")
        return cadence

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("ends_on must not be before starts_on")
        return self


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    goal: LongText | None = None
    brief: LongText | None = None
    state: CampaignState | None = None
    cadence: dict[Channel, Cadence] | None = None
    starts_on: date | None = None
    ends_on: date | None = None


class Progress(BaseModel):
    """Posts of the campaign per state, and their total."""

    total: int
    by_state: dict[PostState, int]


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    brand_id: UUID
    name: str
    goal: str | None
    brief: str | None
    channels: list[Channel]
    cadence: dict[Channel, Cadence]
    starts_on: date | None
    ends_on: date | None
    state: CampaignState
    created_at: datetime
    progress: Progress | None = None


class CampaignPage(BaseModel):
    items: list[CampaignRead]
    next_cursor: str | None


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    month: Month


class ScheduleResult(BaseModel):
    month: str
    created: int
    existing: int


# ---- posts -----------------------------------------------------------------------------
class PostRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    campaign_id: UUID
    channel: Channel
    scheduled_at: datetime
    local_date: date
    local_time: time
    state: PostState
    origin: str
    title: str | None
    text: str | None
    hashtags: list[str]
    call_to_action: str | None
    image_prompt: str | None
    alt_text: str | None
    content_version: int
    generation_job_id: str | None
    generation_note: str | None
    last_error: str | None
    updated_at: datetime


class PostPage(BaseModel):
    items: list[PostRead]
    next_cursor: str | None


class PostUpdate(BaseModel):
    """Edit content or move the post; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(max_length=200), NoNul] | None = None
    text: LongText | None = None
    hashtags: list[Hashtag] | None = Field(default=None, max_length=30)
    call_to_action: Annotated[str, StringConstraints(max_length=300), NoNul] | None = None
    image_prompt: Annotated[str, StringConstraints(max_length=1000), NoNul] | None = None
    alt_text: Annotated[str, StringConstraints(max_length=1000), NoNul] | None = None
    scheduled_at: datetime | None = None

    @model_validator(mode="after")
    def _text_stays(self) -> Self:
        # A post's text is replaced, never emptied: an empty draft would reach review.
        if "text" in self.model_fields_set and not (self.text or "").strip():
            raise ValueError("text cannot be emptied; write new text or regenerate the post")
        return self

    @field_validator("scheduled_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-12-03T10:00:00+01:00")
        return value

    def content(self) -> dict[str, Any]:
        fields = self.model_dump(exclude_unset=True, exclude={"scheduled_at"})
        if "hashtags" in fields and fields["hashtags"] is not None:
            fields["hashtags"] = list(dict.fromkeys(h.lstrip("#") for h in fields["hashtags"]))
        return fields


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: PostState
    note: Note | None = None


class RegenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = None


class TransitionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_state: PostState | None
    to_state: PostState
    actor: str
    note: str | None
    at: datetime


class PostHistory(BaseModel):
    items: list[TransitionRead]


class ImportResult(BaseModel):
    imported: int


# ---- client review ---------------------------------------------------------------------
class ReviewLinkCreate(BaseModel):
    """A link for one post or for a campaign's month."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of(post_id="string", month="string")
    )

    post_id: UUID | None = None
    month: Month | None = None
    reviewer: Annotated[str, StringConstraints(max_length=200), NoNul] | None = None
    expires_in_hours: int = Field(default=72, ge=1, le=24 * 30)

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if (self.post_id is None) == (self.month is None):
            raise ValueError("give exactly one of post_id and month")
        return self


class ReviewLinkRead(BaseModel):
    id: UUID
    url: str
    token: str
    expires_at: datetime
    post_id: UUID | None
    month: str | None


class ReviewPost(BaseModel):
    """What a client sees of a post (no internal notes, no job ids)."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    channel: Channel
    scheduled_at: datetime
    state: PostState
    title: str | None
    text: str | None
    hashtags: list[str]
    call_to_action: str | None
    image_prompt: str | None
    alt_text: str | None


class ReviewView(BaseModel):
    campaign: str
    brand: str
    expires_at: datetime
    posts: list[ReviewPost]


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: Note | None = None

    @model_validator(mode="after")
    def _rejections_say_why(self) -> Self:
        if self.decision == "reject" and not self.comment:
            raise ValueError("a rejection needs a comment for the writer")
        return self


# ---- publishing ------------------------------------------------------------------------
class PublishingTargetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200), NoNul]
    accept_secret_header: bool = False


class PublishingTargetRead(BaseModel):
    """The secret is never shown again (nor credentials written in the URL)."""

    webhook_url: str
    accept_secret_header: bool
    updated_at: datetime

    @field_validator("webhook_url")
    @classmethod
    def _masked(cls, url: str) -> str:
        return without_credentials(url)
