"""Facts the planner publishes."""

from datetime import date
from typing import ClassVar
from uuid import UUID

from bai_contracts._base import EventContract


class CampaignCreated(EventContract):
    """A campaign was created in a tenant's workspace."""

    subject: ClassVar[str] = "bai.planner.campaign.created.v1"

    campaign_id: UUID
    name: str
    goal: str | None = None
    channels: list[str] = []
    starts_on: date | None = None
    ends_on: date | None = None
