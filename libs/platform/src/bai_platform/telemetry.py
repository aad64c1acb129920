"""Logs, traces and metrics, set up in one place.

- Logs: structlog, JSON lines on stderr, each with the current ``trace_id``; the standard
  library's loggers (uvicorn, sqlalchemy) go through the same renderer.
- Traces: OpenTelemetry; the exporter is a setting (``none`` by default, ``console`` or
  ``otlp``). Context crosses HTTP via the ASGI middleware and NATS via message headers.
- Metrics: Prometheus, ``/metrics`` on every api process.
"""

import logging
import sys
import time
from typing import Any

import structlog
from fastapi import FastAPI, Response
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bai_platform.settings import ServiceSettings

REQUESTS = Counter(
    "bai_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "bai_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def _add_trace_id(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
    return event


def configure_logging(settings: ServiceSettings) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_id,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _exporter(settings: ServiceSettings) -> SpanExporter | None:
    if settings.otel_exporter == "console":
        return ConsoleSpanExporter()
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.otel_endpoint)
    return None


def tracer_provider(settings: ServiceSettings, *, process: str) -> TracerProvider:
    """The process's tracer provider, exporting where the settings say."""
    resource = Resource.create(
        {"service.name": f"bai-{settings.service_name}", "service.instance.role": process}
    )
    exporter = _exporter(settings)
    # Spans that no exporter would send are not recorded: their trace and span ids still
    # name the logs and travel in traceparent headers, but the attributes, events and
    # timings nobody reads are skipped (a tenth of a service's CPU per request under load).
    sampler = sampling.DEFAULT_ON if exporter is not None else sampling.ALWAYS_OFF
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configure_tracing(settings: ServiceSettings, *, process: str) -> TracerProvider:
    provider = tracer_provider(settings, process=process)
    trace.set_tracer_provider(provider)
    return provider


class MetricsMiddleware:
    """Counts and times every request by its route template, not its raw path."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            REQUESTS.labels(self.service, method, route, str(status)).inc()
            LATENCY.labels(self.service, method, route).observe(time.perf_counter() - started)


def install_telemetry(app: FastAPI, settings: ServiceSettings) -> None:
    app.add_middleware(MetricsMiddleware, service=settings.service_name)
    app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
