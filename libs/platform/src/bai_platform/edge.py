"""The edge's one route table, rendered for Traefik's file provider and for Kubernetes.

Traefik proxies the bytes; the gateway decides (ForwardAuth at ``/auth/verify``).
``ROUTES`` and ``middlewares()`` are the only place a path, a priority, a target service
or a middleware chain is written down. Two renderers read them:

- ``file_config`` writes the dynamic configuration of ``make run`` (routers, middlewares,
  services at local URLs);
- ``k8s_manifests`` writes ``traefik.io/v1alpha1`` Middlewares and one IngressRoute per
  route for namespace ``bai`` (entry point ``websecure``, services ``<service>-api:8000``),
  committed at ``deploy/k8s/base/edge/`` by ``bai-stack render-edge``.

Invariants: both renderings carry the same match rules, priorities, target services,
ordered middleware lists and middleware settings. They differ only where a service lives
(a URL locally, a Service in the cluster), in the ForwardAuth address and the error pages'
service that follow from it, and in TLS, which only the cluster terminates. Middleware
settings are written once, in Traefik's own key names, which the file provider and the
Middleware CRD's ``spec`` share.

Client addresses: the flood shields count requests per client. With no trusted proxy the
client is the TCP peer (Traefik's default, as ``make run`` has always run). With trusted
proxies (``BAI_EDGE_TRUSTED_IPS`` locally, ``--trusted-proxy`` for the cluster; the same
list belongs in the entry point's ``forwardedHeaders.trustedIPs``) the client is the
right-most ``X-Forwarded-For`` address that is not one of them: the address the outermost
trusted proxy saw, which a client cannot choose (``ipStrategy.excludedIPs``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from textwrap import indent
from typing import Any

import yaml

NAMESPACE = "bai"
ENTRY_POINT = "websecure"
SERVICE_PORT = 8000
CLUSTER_AUTH_ADDRESS = (
    f"http://gateway-api.{NAMESPACE}.svc.cluster.local:{SERVICE_PORT}/auth/verify"
)
RENDER_COMMAND = "bai-stack render-edge"
# The gateway's page for an answer Traefik gave itself ({status} is Traefik's variable,
# and FastAPI's path parameter on the gateway's side).
PROBLEM_PAGE_PATH = "/edge/problems/{status}"
LOCAL_PAGE_SERVICE = "gateway"
CLUSTER_PAGE_SERVICE: Mapping[str, Any] = {"name": "gateway-api", "port": SERVICE_PORT}

# Headers only the gateway may set: a client's copies are dropped on the way in.
IDENTITY_HEADERS = ("X-BAI-Identity", "RateLimit", "RateLimit-Policy")


@dataclass(frozen=True)
class StripHeaders:
    """Request headers removed before anything else sees the request."""

    names: Sequence[str]

    def spec(self) -> dict[str, Any]:
        return {"headers": {"customRequestHeaders": dict.fromkeys(self.names, "")}}


@dataclass(frozen=True)
class RateLimit:
    """Traefik's token bucket per client address (see the module docstring)."""

    average: int
    burst: int
    trusted_proxies: Sequence[str] = ()
    period: str = "1s"

    def spec(self) -> dict[str, Any]:
        limit: dict[str, Any] = {"average": self.average, "burst": self.burst}
        limit["period"] = self.period
        if self.trusted_proxies:
            strategy = {"excludedIPs": list(self.trusted_proxies)}
            limit["sourceCriterion"] = {"ipStrategy": strategy}
        return {"rateLimit": limit}


@dataclass(frozen=True)
class ForwardAuth:
    """Ask the gateway about every request; copy only its identity headers onward."""

    address: str
    response_headers: Sequence[str] = IDENTITY_HEADERS
    # Origin: a website chat visitor token is honoured only from the page it was minted for.
    request_headers: Sequence[str] = ("Authorization", "X-Forwarded-For", "X-Real-Ip", "Origin")
    # The answer is a problem+json or empty: a bigger one is not the gateway speaking.
    max_response_body_size: int = 65536

    def spec(self) -> dict[str, Any]:
        return {
            "forwardAuth": {
                "address": self.address,
                # Never true: it would also believe a client's X-Forwarded-Uri and -Method,
                # the path and method the decision is about.
                "trustForwardHeader": False,
                "maxResponseBodySize": self.max_response_body_size,
                "authResponseHeaders": list(self.response_headers),
                "authRequestHeaders": list(self.request_headers),
            }
        }


@dataclass(frozen=True)
class Retry:
    """Send a request again, to another replica, when its connection could not be made.

    Traefik retries only before the request's headers reached a backend, so nothing a
    backend may have acted on is sent twice (a POST included). Last in every chain: placed
    before ForwardAuth, its question to the gateway would count as the request reaching a
    backend and turn retries off.
    """

    attempts: int = 3
    initial_interval: str = "100ms"

    def spec(self) -> dict[str, Any]:
        return {"retry": {"attempts": self.attempts, "initialInterval": self.initial_interval}}


@dataclass(frozen=True)
class ErrorPages:
    """Answers of ``status`` from further down the chain, replaced by the gateway's page.

    Traefik sends the page with the original status and the page's own headers
    (Content-Type, Retry-After); the original answer's headers and body are dropped. So it
    stands only in front of a middleware whose bare answer it replaces, on a route whose
    backend never gives that status itself: a service's own 429 carries its code, its
    Retry-After and the RateLimit fields, which a page would lose.
    """

    status: Sequence[str]
    service: str | Mapping[str, Any]
    query: str = PROBLEM_PAGE_PATH

    def spec(self) -> dict[str, Any]:
        service = self.service if isinstance(self.service, str) else dict(self.service)
        return {"errors": {"status": list(self.status), "service": service, "query": self.query}}


@dataclass(frozen=True)
class Middleware:
    name: str
    kind: StripHeaders | RateLimit | ForwardAuth | Retry | ErrorPages
    why: Sequence[str] = ()


@dataclass(frozen=True)
class Route:
    name: str
    rule: str
    priority: int
    service: str
    middlewares: Sequence[str]
    why: Sequence[str] = ()


def middlewares(
    *,
    auth_address: str,
    trusted_proxies: Sequence[str] = (),
    page_service: str | Mapping[str, Any] = LOCAL_PAGE_SERVICE,
) -> list[Middleware]:
    """The edge's middlewares; only the ForwardAuth address and the error pages' service
    depend on where the gateway is."""
    return [
        Middleware(
            "strip-identity",
            StripHeaders(IDENTITY_HEADERS),
            why=(
                "A client can never smuggle an identity (or rate-limit fields): the headers",
                "are dropped on the way in and, on protected routes, set only from the",
                "ForwardAuth answer.",
            ),
        ),
        Middleware(
            "flood-shield",
            RateLimit(average=300, burst=600, trusted_proxies=trusted_proxies),
            why=(
                "Coarse per-client flood shield in front of everything; fine-grained limits",
                "are the gateway's.",
            ),
        ),
        Middleware(
            "review-shield",
            RateLimit(average=10, burst=30, trusted_proxies=trusted_proxies),
            why=(
                "Client review links: nobody legitimate opens hundreds of review pages a second.",
            ),
        ),
        Middleware(
            "shield-problems",
            ErrorPages(status=("429",), service=page_service),
            why=(
                "Traefik's rate limiter answers 429 in plain text: in front of the review",
                "shield, its 429 becomes the gateway's problem+json (Retry-After 1). Not in",
                "front of the flood shield: behind it the gateway and the services answer 429",
                "themselves, with a code, a Retry-After and RateLimit fields a page would lose.",
            ),
        ),
        Middleware(
            "edge-problems",
            ErrorPages(status=("502", "504"), service=page_service),
            why=(
                "Traefik's own 502 (no replica could be reached, or one died mid-answer) and",
                "504 are plain text: they become the gateway's problem+json. No service answers",
                "502 or 504 itself. Not 503: the services answer it, with a code and a",
                "Retry-After a page would lose.",
            ),
        ),
        Middleware(
            "forward-auth",
            ForwardAuth(auth_address),
            why=(
                "The gateway decides. trustForwardHeader is never true: it would also believe a",
                "client's X-Forwarded-Uri and -Method, the path and method the decision is about;",
                "the decision uses no client IP. A bigger answer than maxResponseBodySize is not",
                "the gateway speaking (it answers problem+json or nothing). Origin is forwarded:",
                "a website chat visitor token is honoured only from the page it was minted for.",
            ),
        ),
        Middleware(
            "retry-unreached",
            Retry(),
            why=(
                "A replica that is stopping or gone: the request goes to another. Only requests",
                "that never reached a backend are sent again, so nothing is applied twice.",
            ),
        ),
    ]


_PUBLIC = ("edge-problems", "strip-identity", "flood-shield", "retry-unreached")
_PROTECTED = ("edge-problems", "strip-identity", "flood-shield", "forward-auth", "retry-unreached")
_PUBLIC_AUTH_PATHS = (
    "/v1/auth/signup",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/invitations/accept",
    "/.well-known/jwks.json",
    "/v1/openapi.json",
    "/v1/docs",
)


def _paths(*paths: str) -> str:
    return " || ".join(f"Path(`{path}`)" for path in paths)


def _prefix(prefix: str) -> str:
    return f"PathPrefix(`{prefix}`)"


ROUTES: tuple[Route, ...] = (
    Route(
        "health",
        _paths("/healthz", "/readyz"),
        1000,
        "gateway",
        ("edge-problems", "strip-identity", "retry-unreached"),
    ),
    Route("public-auth", _paths(*_PUBLIC_AUTH_PATHS), 900, "gateway", _PUBLIC),
    Route("n8n-callbacks", _prefix("/v1/webhooks/"), 900, "gateway", _PUBLIC),
    Route(
        "chat-public",
        _prefix("/v1/chat/"),
        900,
        "gateway",
        _PUBLIC,
        why=(
            "Website chat: visitor tokens and the widget script are public (the widget key and",
            "the page's Origin are checked by the gateway against creator's widget).",
        ),
    ),
    Route(
        "chat-preflight",
        f"Method(`OPTIONS`) && {_prefix('/v1/creator/chat/')}",
        900,
        "gateway",
        _PUBLIC,
        why=(
            "Browsers send CORS preflights without the visitor token: the gateway answers them.",
            "The chat requests themselves go to creator through forward-auth (creator route).",
        ),
    ),
    Route(
        "client-review",
        _prefix("/v1/planner/review/"),
        900,
        "planner",
        ("edge-problems", "strip-identity", "shield-problems", "review-shield", "retry-unreached"),
        why=(
            "Client review links: the signed link is the credential, so no ForwardAuth; a",
            "tighter per-client shield, whose refusals are problem+json (planner never",
            "answers 429 itself).",
        ),
    ),
    Route("stripe-webhooks", _paths("/v1/billing/webhooks/stripe"), 900, "billing", _PUBLIC),
    Route("gateway", f"{_prefix('/v1/auth/')} || Path(`/v1/events`)", 100, "gateway", _PROTECTED),
    *(
        Route(name, _prefix(f"/v1/{name}/"), 100, name, _PROTECTED)
        for name in ("planner", "creator", "mining", "billing")
    ),
)


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=10_000)


def _comments(lines: Sequence[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def _entry(name: str, body: object, why: Sequence[str], depth: int) -> str:
    """One mapping entry at ``depth`` levels of two spaces, its comment lines above it."""
    return indent(_comments(why) + _dump({name: body}), "  " * depth)


def _router(route: Route) -> dict[str, Any]:
    chain = list(route.middlewares)
    return {
        "entryPoints": [LOCAL_ENTRY_POINT],
        "rule": route.rule,
        "priority": route.priority,
        "service": route.service,
        "middlewares": chain,
    }


LOCAL_ENTRY_POINT = "web"
# With several gateway processes, ForwardAuth asks Traefik itself (on an entry point bound
# to the loopback only) and Traefik balances the question across them, as a Kubernetes
# Service does in the cluster.
INTERNAL_ENTRY_POINT = "internal"
AUTH_VERIFY_PATH = "/auth/verify"
JWKS_PATH = "/.well-known/jwks.json"


def _balanced(urls: Sequence[str]) -> dict[str, Any]:
    balancer: dict[str, Any] = {"servers": [{"url": url} for url in urls]}
    if len(urls) > 1:
        # A draining replica (503 at once) leaves the rotation within a second; a slow
        # answer from a busy one is given 3 s before it counts as a failure, so that two
        # busy replicas are not both taken out at the same moment.
        balancer["healthCheck"] = {"path": "/readyz", "interval": "1s", "timeout": "3s"}
    return {"loadBalancer": balancer}


def file_config(
    *,
    service_urls: Mapping[str, str | Sequence[str]],
    trusted_proxies: Sequence[str] = (),
    routes: Sequence[Route] = ROUTES,
    internal_auth_url: str | None = None,
) -> str:
    """Traefik's dynamic configuration (file provider) for the local stack.

    ``service_urls`` gives each service's URL, or the URLs of its replicas (balanced, and
    health-checked). With ``internal_auth_url`` (the internal entry point's address),
    ForwardAuth goes there and Traefik balances it across the gateway's replicas.
    """
    urls = {
        name: [url] if isinstance(url, str) else list(url) for name, url in service_urls.items()
    }
    auth = f"{internal_auth_url or urls['gateway'][0]}{AUTH_VERIFY_PATH}"
    header = _comments(
        (
            "Traefik dynamic configuration: routes, ForwardAuth and the flood shield.",
            "Rendered by bai_platform.devstack.traefik from the route table in bai_platform.edge;",
            "change the table, never this file.",
        )
    )
    parts = [header, "http:\n  middlewares:\n"]
    for mw in middlewares(auth_address=auth, trusted_proxies=trusted_proxies):
        parts.append(_entry(mw.name, mw.kind.spec(), mw.why, 2))
    parts.append("  routers:\n")
    parts += [_entry(route.name, _router(route), route.why, 2) for route in routes]
    if internal_auth_url:
        verify = {
            "entryPoints": [INTERNAL_ENTRY_POINT],
            "rule": _paths(AUTH_VERIFY_PATH, JWKS_PATH),
            "service": "gateway",
            "middlewares": ["retry-unreached"],
        }
        why = (
            "ForwardAuth's questions and the services' JWKS fetches, balanced across the",
            "gateway's replicas (loopback only).",
        )
        parts.append(_entry("gateway-internal", verify, why, 2))
    parts.append("  services:\n")
    for name in dict.fromkeys(route.service for route in routes):
        parts.append(_entry(name, _balanced(urls[name]), (), 2))
    return "".join(parts)


@dataclass(frozen=True)
class Tls:
    """Where the cluster's certificate comes from.

    By default a Secret that cert-manager keeps filled (the Certificate is rendered beside
    the routes). With ``cert_resolver``, a resolver of Traefik's own static configuration
    (ACME) obtains and stores the certificate, and ``secret_name`` is unused.
    """

    secret_name: str = "bai-tls"
    cert_resolver: str | None = None
    issuer: str = "letsencrypt"
    dns_names: Sequence[str] = ("bai.example.com",)

    def spec(self) -> dict[str, str]:
        if self.cert_resolver:
            return {"certResolver": self.cert_resolver}
        return {"secretName": self.secret_name}


_LABELS = {"app.kubernetes.io/part-of": "bai", "app.kubernetes.io/component": "edge"}


def _object(
    kind: str, name: str, spec: Mapping[str, Any], api: str = "traefik.io/v1alpha1"
) -> dict[str, Any]:
    meta = {"name": name, "namespace": NAMESPACE, "labels": dict(_LABELS)}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": dict(spec)}


def _ingress_route(route: Route, tls: Tls) -> dict[str, Any]:
    backend = {"kind": "Service", "name": f"{route.service}-api", "port": SERVICE_PORT}
    rule = {
        "kind": "Rule",
        "match": route.rule,
        "priority": route.priority,
        "middlewares": [{"name": name} for name in route.middlewares],
        "services": [backend],
    }
    return _object(
        "IngressRoute",
        route.name,
        {"entryPoints": [ENTRY_POINT], "routes": [rule], "tls": tls.spec()},
    )


def _certificate(tls: Tls) -> dict[str, Any]:
    issuer = {"kind": "ClusterIssuer", "name": tls.issuer}
    spec = {"secretName": tls.secret_name, "dnsNames": list(tls.dns_names), "issuerRef": issuer}
    return _object("Certificate", tls.secret_name, spec, api="cert-manager.io/v1")


def _documents(header: Sequence[str], docs: Sequence[tuple[Sequence[str], object]]) -> str:
    body = "".join(f"---\n{_comments(why)}{_dump(doc)}" for why, doc in docs)
    return _comments(header) + body


def _header(what: str) -> list[str]:
    return [
        f"{what} for namespace {NAMESPACE}. GENERATED from the route table in",
        f"bai_platform.edge by `{RENDER_COMMAND}`: change the table and re-render,",
        "never this file.",
    ]


_TLS_NOTE = (
    "TLS: by default cert-manager keeps Secret bai-tls filled (certificate.yaml; patch its",
    "dnsNames and issuer in an overlay). With Traefik's own ACME instead, re-render with",
    f"`{RENDER_COMMAND} --cert-resolver NAME` (a certificatesResolvers entry in Traefik's",
    "static configuration) and drop certificate.yaml.",
)


_CLIENT_NOTE = (
    "Client addresses: the shields count per TCP peer unless rendered with --trusted-proxy.",
    "In the cluster the peer is the real client only if Traefik's Service keeps it",
    "(externalTrafficPolicy: Local) or the load balancer speaks PROXY protocol",
    "(ports.websecure.proxyProtocol.trustedIPs); see deploy/traefik/helm-values.yaml.",
    "Behind an HTTP proxy that appends X-Forwarded-For, re-render with",
    "`--trusted-proxy CIDR` (once per CIDR): the client is then the right-most",
    "X-Forwarded-For address outside those CIDRs",
    "(sourceCriterion.ipStrategy.excludedIPs), and Traefik must keep their headers",
    "(ports.websecure.forwardedHeaders.trustedIPs, rendered into the Helm values).",
)


def traefik_values(*, trusted_proxies: Sequence[str] = (), tls: Tls | None = None) -> str:
    """Helm values for the operator's Traefik: the cluster's twin of traefik.yml.tmpl."""
    tls = tls or Tls()
    websecure: dict[str, Any] = {
        "forwardedHeaders": {"trustedIPs": list(trusted_proxies)},
        # No write timeout: live events (SSE) are long-lived responses.
        "transport": {
            "respondingTimeouts": {
                "readTimeout": "60s",
                "writeTimeout": "0s",
                "idleTimeout": "120s",
            },
            "lifeCycle": {"graceTimeOut": "10s"},
        },
    }
    if tls.cert_resolver:
        websecure["tls"] = {"enabled": True, "certResolver": tls.cert_resolver}
    redirect = {"to": ENTRY_POINT, "scheme": "https", "permanent": True}
    values = {
        "ports": {"web": {"redirections": {"entryPoint": redirect}}, ENTRY_POINT: websecure},
        # The client's own address reaches Traefik (no SNAT to a node's address).
        "service": {"spec": {"externalTrafficPolicy": "Local"}},
    }
    header = [
        "Helm values for the operator's Traefik in namespace traefik (helm install traefik",
        "traefik/traefik -n traefik -f deploy/traefik/helm-values.yaml). GENERATED by",
        f"`{RENDER_COMMAND}` with deploy/k8s/base/edge, so the trusted proxies agree.",
    ]
    return _comments(header) + _dump(values)


def k8s_manifests(
    *,
    trusted_proxies: Sequence[str] = (),
    tls: Tls | None = None,
    routes: Sequence[Route] = ROUTES,
) -> dict[str, str]:
    """The files of ``deploy/k8s/base/edge/``, by name."""
    tls = tls or Tls()
    mws = middlewares(
        auth_address=CLUSTER_AUTH_ADDRESS,
        trusted_proxies=trusted_proxies,
        page_service=CLUSTER_PAGE_SERVICE,
    )
    files = {
        "middlewares.yaml": _documents(
            [*_header("Traefik Middlewares"), *_CLIENT_NOTE],
            [(mw.why, _object("Middleware", mw.name, mw.kind.spec())) for mw in mws],
        ),
        "ingressroutes.yaml": _documents(
            [*_header("Traefik IngressRoutes"), *_TLS_NOTE],
            [(route.why, _ingress_route(route, tls)) for route in routes],
        ),
    }
    if not tls.cert_resolver:
        certificate = [((), _certificate(tls))]
        files["certificate.yaml"] = _documents(_header("cert-manager Certificate"), certificate)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = _comments(_header("Kustomization of the edge")) + _dump(
        kustomization
    )
    return files
