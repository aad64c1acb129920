"""Mining API shapes."""

import json
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
    field_validator,
)

from bai_platform.destinations import without_credentials
from bai_platform.validation import NoNul

MAX_PARAMS_BYTES = 16 * 1024
StartUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


class WebsiteSource(BaseModel):
    """The built-in crawler: start URLs, same site only unless told otherwise."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["website"]
    urls: list[StartUrl] = Field(min_length=1, max_length=20)
    same_site: bool = True


def has_nul(value: object) -> bool:
    """Whether any text in ``value`` (keys too) holds NUL, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def _params(value: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise ValueError("must be plain JSON (no NaN or Infinity)") from exc
    if len(raw.encode()) > MAX_PARAMS_BYTES:
        raise ValueError(f"must be at most {MAX_PARAMS_BYTES} bytes as JSON")
    if has_nul(value):
        raise ValueError("must not contain NUL characters")
    return value


class N8nSource(BaseModel):
    """The workspace's mining workflow (PUT /v1/mining/workflow), given ``params``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["n8n"]
    # Whatever the workflow understands, e.g. {"query": "coffee shops", "city": "Madrid"};
    # "country" (two letters) is also the region phone numbers are read in.
    params: Annotated[dict[str, Any], AfterValidator(_params)] = Field(default_factory=dict)


Source = Annotated[WebsiteSource | N8nSource, Field(discriminator="type")]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_pages: int = Field(default=20, ge=1, le=500)
    # The crawler's link depth; n8n sources ignore it.
    max_depth: int = Field(default=2, ge=0, le=5)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Source
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
    # The formats are documented (clients, and the fuzz's generator, then send crons and
    # zones); the validators check them with messages people can read.
    cron: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=100),
        AfterValidator(_cron),
        Field(json_schema_extra={"format": "cron", "examples": ["0 9 * * 1"]}),
    ]
    timezone: Annotated[
        str,
        StringConstraints(max_length=64),
        AfterValidator(_zone),
        Field(json_schema_extra={"format": "time-zone", "examples": ["Europe/Madrid"]}),
    ] = "UTC"
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


class WorkflowUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
    secret: Annotated[str, StringConstraints(min_length=16, max_length=500), NoNul]
    # The original system's shared-secret header, for workflows not signing yet.
    accept_secret_header: bool = False
    # No final callback within this long after dispatch: the job ends with what arrived.
    deadline_seconds: int = Field(default=3600, ge=60, le=86_400)


class WorkflowRead(BaseModel):
    """The secret is never shown again (nor credentials written in the URL)."""

    model_config = ConfigDict(from_attributes=True)

    webhook_url: str
    accept_secret_header: bool
    deadline_seconds: int
    updated_at: datetime

    @field_validator("webhook_url")
    @classmethod
    def _masked(cls, url: str) -> str:
        return without_credentials(url)
