"""Creator worker: outbox relay, the consumers of planner events, and the engine runner."""

from collections.abc import Callable

from bai_contracts import CampaignCreated, PostGenerationRequested
from bai_platform.consumer import Subscription
from bai_platform.settings import ServiceSettings
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
from creator.events import on_campaign_created, on_generation_requested
from creator.generation import run_builtin_jobs
from creator.models import inbox, outbox
from creator.settings import CreatorSettings


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, CreatorSettings)
    campaigns = Subscription(
        durable="creator-campaign-created",
        stream="PLANNER",
        subjects=(CampaignCreated.subject,),
        handler=on_campaign_created,
        description="creator keeps each campaign's brief",
    )
    requests = Subscription(
        durable="creator-generation-requested",
        stream="PLANNER",
        subjects=(PostGenerationRequested.subject,),
        handler=on_generation_requested,
        description="creator queues a generation job per request",
    )
    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[campaigns, requests],
        tasks=[_builtin_runner(settings)],
    )


def _builtin_runner(settings: CreatorSettings) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def run_once() -> None:
            while True:  # drain the queue, one transaction per batch
                async with ctx.db.transaction() as session:
                    if await run_builtin_jobs(session) == 0:
                        return

        return every(settings.builtin_poll_seconds, run_once, name="builtin-engine")

    return build
