"""Mining API shapes."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import available_timezones

from croniter import croniter
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
)

StartUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


class WebsiteSource(BaseModel):
    """The built-in crawler: start URLs, same site only unless told otherwise."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["website"]
    urls: list[StartUrl] = Field(min_length=1, max_length=20)
    same_site: bool = True


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_pages: int = Field(default=20, ge=1, le=500)
    max_depth: int = Field(default=2, ge=0, le=5)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: WebsiteSource
    limits: Limits = Field(default_factory=Limits)


class Progress(BaseModel):
    pages_fetched: int
    items_found: int
    errors: int


class JobRead(BaseModel):
    id: str
    state: str
    source: dict[str, Any]
    limits: dict[str, Any]
    progress: Progress
    problems: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class LeadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organisation: str | None
    domain: str | None
    emails: list[str]
    phones: list[str]
    socials: list[str]
    addresses: list[str]
    pages: list[str]
    data: dict[str, Any]


class LeadPage(BaseModel):
    items: list[LeadRead]
    next_cursor: str | None


def _cron(value: str) -> str:
    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ValueError("must be a five-field cron expression such as '0 9 * * 1'")
    return value


def _zone(value: str) -> str:
    if value not in available_timezones():
        raise ValueError("must be an IANA time zone such as Europe/Madrid")
    return value


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    cron: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_cron)
    ]
    timezone: Annotated[str, StringConstraints(max_length=64), AfterValidator(_zone)] = "UTC"
    job: JobCreate


class ScheduleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    cron: str
    timezone: str
    job: dict[str, Any]
    active: bool
    next_run_at: datetime
    last_job_id: str | None
    skipped_runs: int


class SchedulePage(BaseModel):
    items: list[ScheduleRead]
