"""Mining API shapes."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

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
