"""Logs carry the trace id, metrics carry route templates, events carry the trace."""

import json
import logging
from collections.abc import AsyncIterator
from typing import ClassVar

import httpx
import pytest
import structlog
from fastapi import APIRouter, FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from bai_contracts import EventContract
from bai_platform.envelope import new_event
from bai_platform.settings import ServiceSettings
from bai_platform.telemetry import configure_logging, install_telemetry, tracer_provider


class Pinged(EventContract):
    subject: ClassVar[str] = "bai.test.ping.happened.v1"


@pytest.fixture(scope="module")
def tracer() -> trace.Tracer:
    return TracerProvider().get_tracer("test")


def test_event_created_inside_a_span_carries_its_traceparent(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("request") as span:
        envelope = new_event(Pinged(), source="test", tenant_id=None)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert envelope.traceparent is not None
    assert envelope.traceparent.split("-")[1] == trace_id


def test_json_logs_carry_the_trace_id(
    tracer: trace.Tracer, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(ServiceSettings(log_format="json"))
    try:
        with tracer.start_as_current_span("request") as span:
            structlog.get_logger("test").info("something_happened", campaign="c-1")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert line["event"] == "something_happened"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app = FastAPI()
    app.include_router(router)
    install_telemetry(app, ServiceSettings(service_name="metricstest"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        yield http


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    for thing in ("a", "b"):
        await client.get(f"/things/{thing}")
    metrics = (await client.get("/metrics")).text
    assert (
        'bai_http_requests_total{method="GET",route="/things/{thing_id}",'
        'service="metricstest",status="200"} 2.0'
    ) in metrics


@pytest.mark.parametrize(("exporter", "recorded"), [("none", False), ("console", True)])
def test_spans_are_recorded_only_when_exported(exporter: str, recorded: bool) -> None:
    settings = ServiceSettings(otel_exporter=exporter)
    provider = tracer_provider(settings, process="api")
    try:
        with provider.get_tracer("test").start_as_current_span("request") as span:
            context, recording = span.get_span_context(), span.is_recording()
            envelope = new_event(Pinged(), source="test", tenant_id=None)
    finally:
        provider.shutdown()
    assert recording is recorded
    assert context.is_valid  # logs and traceparent headers still name the trace
    assert envelope.traceparent is not None
    assert envelope.traceparent.split("-")[1] == format(context.trace_id, "032x")
