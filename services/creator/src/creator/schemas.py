"""Creator API shapes."""

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class CampaignBriefRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    campaign_id: UUID
    name: str
    goal: str | None
    channels: list[str]
    starts_on: date | None
    ends_on: date | None
    received_at: datetime
