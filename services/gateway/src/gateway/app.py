from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bai_platform.settings import ServiceSettings
from bai_platform.web import create_service_app
from gateway.api import router
from gateway.chat_api import router as chat_router
from gateway.edge_api import router as edge_router
from gateway.models import idempotency
from gateway.settings import GatewaySettings
from gateway.state import lifespan
from gateway.verify_api import ForwardAuthEndpoint


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    resolved = settings if isinstance(settings, GatewaySettings) else GatewaySettings()

    app = create_service_app(
        resolved,
        title="B.A.I. gateway",
        routers=[router, chat_router, edge_router],
        lifespan=lifespan,
        idempotency=idempotency,
    )
    # Outermost: every per-IP limit (and log line) sees the client the trusted proxies
    # report, whatever server runs the app. Uvicorn is told the same list (bai_platform
    # .runtime); resolving twice gives the same client.
    trusted = [str(network) for network in resolved.trusted_proxies]
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)
    # Outside even that: Traefik's ForwardAuth question, asked before every protected
    # request, needs none of the stack (gateway.verify_api).
    app.add_middleware(ForwardAuthEndpoint)
    return app
