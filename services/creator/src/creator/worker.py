"""Creator worker: outbox relay and the consumers of planner events."""

from bai_contracts import CampaignCreated
from bai_platform.consumer import Subscription
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerSpec
from creator.events import on_campaign_created
from creator.models import inbox, outbox


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    campaigns = Subscription(
        durable="creator-campaign-created",
        stream="PLANNER",
        subjects=(CampaignCreated.subject,),
        handler=on_campaign_created,
        description="creator keeps each campaign's brief",
    )
    return WorkerSpec(outbox=outbox, inbox=inbox, subscriptions=[campaigns])
