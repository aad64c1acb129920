"""Billing worker: relays the outbox."""

from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerSpec
from billing.models import inbox, outbox


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    return WorkerSpec(outbox=outbox, inbox=inbox)
