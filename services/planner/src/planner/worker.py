"""Planner worker: relays the outbox (campaign and post events)."""

from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerSpec
from planner.models import inbox, outbox


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    return WorkerSpec(outbox=outbox, inbox=inbox)
