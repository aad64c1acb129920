"""Traefik's configuration for the local stack.

The static configuration comes from ``deploy/traefik/traefik.yml.tmpl`` with the stack's
ports; the dynamic one (routers, middlewares, services) from the route table in
``bai_platform.edge``, the same table that renders the Kubernetes IngressRoutes.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from string import Template

from bai_platform import edge
from bai_platform.devstack.config import SERVICES, repo_root


def template_dir() -> Path:
    return repo_root() / "deploy" / "traefik"


def render(
    *,
    out_dir: Path,
    host: str,
    edge_port: int,
    service_urls: dict[str, str],
    log_dir: Path,
    trusted_ips: Sequence[str] = (),
) -> Path:
    """Write static and dynamic configuration into ``out_dir``; returns the static file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dynamic = out_dir / "dynamic.yml"
    values = {
        "host": host,
        "edge_port": str(edge_port),
        "dynamic_file": str(dynamic),
        "access_log": str(log_dir / "traefik-access.log"),
        # A JSON list is a YAML flow sequence.
        "trusted_ips": json.dumps(list(trusted_ips)),
    }
    urls = {name: service_urls[name] for name in SERVICES}
    dynamic.write_text(edge.file_config(service_urls=urls, trusted_proxies=trusted_ips))
    static = out_dir / "traefik.yml"
    text = (template_dir() / "traefik.yml.tmpl").read_text()
    static.write_text(Template(text).substitute(values))
    return static
