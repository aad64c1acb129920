"""The one route table renders the same edge for ``make run`` and for Kubernetes.

Both renderings are parsed back, never compared as text, so a difference in what Traefik
would do shows up whatever the formatting.
"""

from dataclasses import replace
from typing import Any

import pytest
import yaml

from bai_platform import edge
from bai_platform.devstack.config import SERVICES, repo_root

LOCAL_URLS = {name: f"http://127.0.0.1:{9000 + i}" for i, name in enumerate(SERVICES)}
EDGE_DIR = repo_root() / "deploy" / "k8s" / "base" / "edge"
VALUES_FILE = repo_root() / "deploy" / "traefik" / "helm-values.yaml"

RouteView = tuple[str, int, str, tuple[str, ...]]


def _file_side(routes: tuple[edge.Route, ...] = edge.ROUTES, **kw: Any) -> dict[str, Any]:
    config = yaml.safe_load(edge.file_config(service_urls=LOCAL_URLS, routes=routes, **kw))
    http: dict[str, Any] = config["http"]
    return http


def _k8s_side(**kw: Any) -> dict[str, list[dict[str, Any]]]:
    """Every object of every rendered file, by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for name, text in edge.k8s_manifests(**kw).items():
        for doc in yaml.safe_load_all(text):
            if doc is not None and name != "kustomization.yaml":
                by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _file_routes(http: dict[str, Any]) -> dict[str, RouteView]:
    routers = http["routers"]
    for router in routers.values():  # the service a router names must be defined
        assert router["service"] in http["services"]
    return {
        name: (r["rule"], r["priority"], r["service"], tuple(r["middlewares"]))
        for name, r in routers.items()
    }


def _k8s_routes(objects: dict[str, list[dict[str, Any]]]) -> dict[str, RouteView]:
    views = {}
    for ingress in objects["IngressRoute"]:
        assert ingress["spec"]["entryPoints"] == ["websecure"]
        (route,) = ingress["spec"]["routes"]
        (backend,) = route["services"]
        assert backend["port"] == 8000
        assert backend["kind"] == "Service"
        service = backend["name"].removesuffix("-api")
        assert backend["name"] == f"{service}-api"
        chain = tuple(m["name"] for m in route["middlewares"])
        name = ingress["metadata"]["name"]
        views[name] = (route["match"], route["priority"], service, chain)
    return views


def _k8s_middlewares(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {mw["metadata"]["name"]: mw["spec"] for mw in objects["Middleware"]}


def _without_gateway_address(middlewares: dict[str, Any]) -> dict[str, Any]:
    copy = yaml.safe_load(yaml.safe_dump(middlewares))
    copy["forward-auth"]["forwardAuth"].pop("address")
    copy["shield-problems"]["errors"].pop("service")
    copy["edge-problems"]["errors"].pop("service")
    return dict(copy)


def test_committed_kubernetes_edge_is_a_fresh_rendering_of_the_table() -> None:
    rendered = edge.k8s_manifests()
    committed = {path.name: path.read_text() for path in EDGE_DIR.iterdir()}
    assert committed == rendered, "run `bai-stack render-edge` and commit the result"
    assert VALUES_FILE.read_text() == edge.traefik_values()


def test_every_route_has_the_same_rule_priority_service_and_middlewares_on_both_sides() -> None:
    local, cluster = _file_routes(_file_side()), _k8s_routes(_k8s_side())
    assert local == cluster
    assert set(local) == {route.name for route in edge.ROUTES}
    assert local["planner"] == (
        "PathPrefix(`/v1/planner/`)",
        100,
        "planner",
        ("edge-problems", "strip-identity", "flood-shield", "forward-auth", "retry-unreached"),
    )


def test_every_route_to_a_backend_ends_with_the_retry_of_unreached_requests() -> None:
    """Last, so that only a connection to the backend that failed is retried: never the
    ForwardAuth question, never a request a backend received."""
    for route in edge.ROUTES:
        assert route.middlewares[-1] == "retry-unreached", route.name
    spec = _file_side()["middlewares"]["retry-unreached"]
    assert spec == {"retry": {"attempts": 3, "initialInterval": "100ms"}}


def test_replicas_are_balanced_and_forward_auth_asks_through_the_internal_entry_point() -> None:
    replicas = {**LOCAL_URLS, "gateway": ["http://127.0.0.1:9000", "http://127.0.0.1:9100"]}
    config = yaml.safe_load(
        edge.file_config(service_urls=replicas, internal_auth_url="http://127.0.0.1:9999")
    )["http"]
    balancer = config["services"]["gateway"]["loadBalancer"]
    assert [s["url"] for s in balancer["servers"]] == replicas["gateway"]
    assert balancer["healthCheck"]["path"] == "/readyz"
    assert "healthCheck" not in config["services"]["planner"]["loadBalancer"]  # one server
    auth = config["middlewares"]["forward-auth"]["forwardAuth"]["address"]
    assert auth == "http://127.0.0.1:9999/auth/verify"
    verify = config["routers"]["gateway-internal"]
    assert verify["entryPoints"] == ["internal"]
    assert verify["rule"] == "Path(`/auth/verify`) || Path(`/.well-known/jwks.json`)"
    assert verify["service"] == "gateway"
    # Every public route is on the web entry point only: the internal one answers nothing
    # but ForwardAuth's questions, and the web one never serves /auth/verify.
    others = [r for name, r in config["routers"].items() if name != "gateway-internal"]
    assert all(r["entryPoints"] == ["web"] for r in others)


def test_middlewares_are_the_same_on_both_sides_but_for_the_gateways_address() -> None:
    local = _file_side()["middlewares"]
    cluster = _k8s_middlewares(_k8s_side())
    assert _without_gateway_address(local) == _without_gateway_address(cluster)
    assert local["forward-auth"]["forwardAuth"]["address"] == "http://127.0.0.1:9000/auth/verify"
    assert cluster["forward-auth"]["forwardAuth"]["address"] == (
        "http://gateway-api.bai.svc.cluster.local:8000/auth/verify"
    )
    assert local["shield-problems"]["errors"]["service"] == "gateway"
    assert cluster["shield-problems"]["errors"]["service"] == {"name": "gateway-api", "port": 8000}


def test_only_the_review_shields_refusals_become_the_gateways_problem_page() -> None:
    """The page replaces every 429 from further down the chain, headers and all: never in
    front of a backend that answers 429 itself (the gateway's ForwardAuth, the services)."""
    pages = _file_side()["middlewares"]["shield-problems"]["errors"]
    assert pages == {"status": ["429"], "service": "gateway", "query": "/edge/problems/{status}"}
    chains = {route.name: route.middlewares for route in edge.ROUTES}
    assert [name for name, chain in chains.items() if "shield-problems" in chain] == [
        "client-review"
    ]
    review = chains["client-review"]
    assert review.index("shield-problems") == review.index("review-shield") - 1


def test_traefiks_own_502_and_504_become_the_gateways_problem_page_on_every_route() -> None:
    """First in every chain, so that a 502 or 504 from anywhere behind it is replaced: no
    service answers either itself. Never 503, which the services answer with a code."""
    pages = _file_side()["middlewares"]["edge-problems"]["errors"]
    assert pages == {
        "status": ["502", "504"],
        "service": "gateway",
        "query": "/edge/problems/{status}",
    }
    for route in edge.ROUTES:
        assert route.middlewares[0] == "edge-problems", route.name


def test_forward_auth_never_trusts_a_clients_forwarded_headers() -> None:
    for side in (_file_side()["middlewares"], _k8s_middlewares(_k8s_side())):
        auth = side["forward-auth"]["forwardAuth"]
        assert auth["trustForwardHeader"] is False
        assert auth["authResponseHeaders"] == ["X-BAI-Identity", "RateLimit", "RateLimit-Policy"]
        assert list(side["strip-identity"]["headers"]["customRequestHeaders"]) == [
            "X-BAI-Identity",
            "RateLimit",
            "RateLimit-Policy",
        ]


def test_a_route_added_to_the_table_appears_on_both_sides() -> None:
    added = edge.Route("extra", "PathPrefix(`/v1/extra/`)", 500, "mining", ("strip-identity",))
    routes = (*edge.ROUTES, added)
    local = _file_routes(_file_side(routes))
    cluster = _k8s_routes(_k8s_side(routes=routes))
    expected = ("PathPrefix(`/v1/extra/`)", 500, "mining", ("strip-identity",))
    assert local["extra"] == cluster["extra"] == expected


def test_routes_name_only_middlewares_that_exist() -> None:
    objects = _k8s_side()
    defined = set(_k8s_middlewares(objects))
    for name, (_, _, _, chain) in _k8s_routes(objects).items():
        assert set(chain) <= defined, name
    assert set(_file_side()["middlewares"]) == defined


@pytest.mark.parametrize("proxies", [(), ("10.0.0.0/8", "192.0.2.7")])
def test_shields_count_the_same_client_address_on_both_sides(proxies: tuple[str, ...]) -> None:
    local = _file_side(trusted_proxies=proxies)["middlewares"]
    cluster = _k8s_middlewares(_k8s_side(trusted_proxies=proxies))
    for shield in ("flood-shield", "review-shield"):
        limit = local[shield]["rateLimit"]
        assert cluster[shield]["rateLimit"] == limit
        criterion = limit.get("sourceCriterion")  # absent: the TCP peer counts
        assert criterion == ({"ipStrategy": {"excludedIPs": list(proxies)}} if proxies else None)
    values = yaml.safe_load(edge.traefik_values(trusted_proxies=proxies))
    assert values["ports"]["websecure"]["forwardedHeaders"]["trustedIPs"] == list(proxies)


def test_every_ingress_route_terminates_tls_with_cert_managers_secret() -> None:
    objects = _k8s_side()
    (certificate,) = objects["Certificate"]
    secret = certificate["spec"]["secretName"]
    assert {i["spec"]["tls"]["secretName"] for i in objects["IngressRoute"]} == {secret}


def test_with_traefiks_acme_every_route_names_the_resolver_and_no_certificate_is_rendered() -> None:
    tls = replace(edge.Tls(), cert_resolver="letsencrypt")
    files = edge.k8s_manifests(tls=tls)
    assert "certificate.yaml" not in files
    assert "certificate.yaml" not in yaml.safe_load(files["kustomization.yaml"])["resources"]
    routes = _k8s_side(tls=tls)["IngressRoute"]
    assert all(r["spec"]["tls"] == {"certResolver": "letsencrypt"} for r in routes)


def test_kustomization_lists_every_rendered_manifest() -> None:
    files = edge.k8s_manifests()
    kustomization = yaml.safe_load(files["kustomization.yaml"])
    assert kustomization["namespace"] == "bai"
    assert set(kustomization["resources"]) == set(files) - {"kustomization.yaml"}


def test_local_routers_send_each_service_to_its_own_url() -> None:
    services = _file_side()["services"]
    urls = {name: s["loadBalancer"]["servers"][0]["url"] for name, s in services.items()}
    assert urls == LOCAL_URLS
