"""The NATS permission table grants each worker exactly the consumers it really binds."""

import importlib

import pytest

from bai_platform.devstack.config import SERVICES
from bai_platform.nats_permissions import Consumer, role_of
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerSpec


def _worker_spec(service: str) -> WorkerSpec:
    settings_class = getattr(
        importlib.import_module(f"{service}.settings"), f"{service.capitalize()}Settings"
    )
    settings: ServiceSettings = settings_class(service_name=service)
    spec: WorkerSpec = importlib.import_module(f"{service}.worker").worker_spec(settings)
    return spec


@pytest.mark.parametrize("service", SERVICES)
def test_the_permission_table_names_the_consumers_the_worker_binds(service: str) -> None:
    bound = {Consumer(sub.stream, sub.durable) for sub in _worker_spec(service).subscriptions}
    assert bound == set(role_of(service).consumes)
