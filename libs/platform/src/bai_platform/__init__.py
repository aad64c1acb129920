"""Plumbing shared by every B.A.I. service. It never mentions a post, a plan or an invoice.

Modules, one idea each:

- ``settings``   pydantic-settings base; refuses known-insecure secrets outside dev
- ``db``         async engines per service schema, the request session, naming convention
- ``messaging``  NATS connection, stream provisioning
- ``envelope``   the CloudEvents-style envelope every event travels in
- ``outbox``     transactional outbox table and its relay
- ``consumer``   idempotent JetStream consumers with inbox, backoff and dead letters
- ``errors``     the ServiceError tree and the one problem+json handler
- ``identity``   verification of the gateway-minted ``X-BAI-Identity``
- ``health``     ``/healthz`` and ``/readyz``
- ``telemetry``  JSON logs, OpenTelemetry traces, Prometheus metrics
- ``web``        the FastAPI app factory every service uses
- ``runtime``    ``python -m <service> api|worker|migrate`` and graceful shutdown
- ``migrations`` Alembic wiring with the version table in the service's schema
- ``devstack``   the local stack supervisor behind ``make run`` and the tests
"""
