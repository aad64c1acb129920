"""Traefik's configuration for the local stack.

The static configuration comes from ``deploy/traefik/traefik.yml.tmpl`` with the stack's
ports; the dynamic one (routers, middlewares, services) from the route table in
``bai_platform.edge``, the same table that renders the Kubernetes IngressRoutes.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template

from bai_platform import edge
from bai_platform.devstack.config import SERVICES, repo_root

LOOPBACK = "127.0.0.1"


def template_dir() -> Path:
    return repo_root() / "deploy" / "traefik"


def render(
    *,
    out_dir: Path,
    host: str,
    edge_port: int,
    service_urls: Mapping[str, Sequence[str]],
    log_dir: Path,
    trusted_ips: Sequence[str] = (),
    internal_port: int | None = None,
) -> Path:
    """Write static and dynamic configuration into ``out_dir``; returns the static file.

    ``service_urls`` lists each service's replicas. With more than one gateway replica,
    ``internal_port`` is where the loopback-only entry point for ForwardAuth listens.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    dynamic = out_dir / "dynamic.yml"
    values = {
        "host": host,
        "edge_port": str(edge_port),
        "dynamic_file": str(dynamic),
        "access_log": str(log_dir / "traefik-access.log"),
        # A JSON list is a YAML flow sequence.
        "trusted_ips": json.dumps(list(trusted_ips)),
        "internal_entry_point": _internal_entry_point(internal_port),
    }
    urls = {name: service_urls[name] for name in SERVICES}
    internal = f"http://{LOOPBACK}:{internal_port}" if internal_port else None
    dynamic.write_text(
        edge.file_config(service_urls=urls, trusted_proxies=trusted_ips, internal_auth_url=internal)
    )
    static = out_dir / "traefik.yml"
    text = (template_dir() / "traefik.yml.tmpl").read_text()
    static.write_text(Template(text).substitute(values))
    return static


def _internal_entry_point(port: int | None) -> str:
    """The static configuration's entry point for ForwardAuth, if any: on the loopback
    whatever the edge binds, since its answers carry identities."""
    if port is None:
        return ""
    # Only the web entry point (this Traefik) calls it: the X-Forwarded-* headers of the
    # request being decided (its method, URI, client) are kept as they arrive.
    return (
        f"  {edge.INTERNAL_ENTRY_POINT}:\n"
        f'    address: "{LOOPBACK}:{port}"\n'
        "    forwardedHeaders:\n"
        f'      trustedIPs: ["{LOOPBACK}/32"]\n'
    )
