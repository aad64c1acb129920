"""Facts the planner publishes."""

from datetime import date, datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from bai_contracts._base import EventContract
from bai_contracts.callbacks import WorkflowReport, WorkflowText


class BrandVoice(BaseModel):
    """How a brand speaks; it travels with every generation request."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tone: str | None = None
    audience: str | None = None
    values: list[str] = []
    keywords: list[str] = []
    avoid: list[str] = []
    examples: list[str] = []
    language: str | None = None


class PublishResult(WorkflowReport):
    """An n8n workflow's callback for a ``pub_`` job: ``published`` (or ``completed``) with
    the post's ``url``, or ``failed`` with an ``error``."""

    url: WorkflowText = None


class CampaignCreated(EventContract):
    """A campaign was created in a tenant's workspace."""

    subject: ClassVar[str] = "bai.planner.campaign.created.v1"

    campaign_id: UUID
    name: str
    goal: str | None = None
    channels: list[str] = []
    starts_on: date | None = None
    ends_on: date | None = None
    brand_id: UUID | None = None
    brief: str | None = None


class PostGenerationRequested(EventContract):
    """The planner asks for a post's content; ``request_id`` names this one request.

    A regeneration is a new request; answers to an older request are stale and ignored.
    """

    subject: ClassVar[str] = "bai.planner.post.generation_requested.v1"

    request_id: UUID
    post_id: UUID
    campaign_id: UUID
    brand_id: UUID
    channel: str
    scheduled_at: datetime
    campaign_name: str
    brief: str | None = None
    goal: str | None = None
    brand_name: str
    voice: BrandVoice = BrandVoice()
    # Why the post is generated again: the editor's note or the client's rejection comment.
    note: str | None = None
    previous_text: str | None = None


class PostStateChanged(EventContract):
    """A post moved from one state to another (live events show it to the tenant)."""

    subject: ClassVar[str] = "bai.planner.post.state_changed.v1"

    post_id: UUID
    campaign_id: UUID
    from_state: str | None
    to_state: str
    actor: str
    at: datetime
    note: str | None = None


class ReviewLinkExpiring(EventContract):
    """A client review link nobody answered expires soon (remind the client)."""

    subject: ClassVar[str] = "bai.planner.review_link.expiring.v1"

    link_id: UUID
    campaign_id: UUID
    post_id: UUID | None = None
    month: str | None = None
    expires_at: datetime
    created_by: str


class MonthScheduled(EventContract):
    """A campaign's month was laid out; ``created`` posts are new (each asked for content)."""

    subject: ClassVar[str] = "bai.planner.campaign.month_scheduled.v1"

    campaign_id: UUID
    month: str
    created: int
