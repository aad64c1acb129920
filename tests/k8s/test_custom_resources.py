"""Every custom resource that an overlay of deploy/k8s renders matches the published CRD of its
group, version and kind (vendored in deploy/k8s/crds), with unknown fields as errors.

Overlays are rendered as in ``conftest`` (``kubectl kustomize``, or the kustomize of
``make k8s-tools``), which works offline and never contacts an API server. An object whose
API group is not built into Kubernetes is a custom resource; one of a kind with no vendored
CRD is an error.
"""

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import kustomize_command
from tests.k8s.crd_schema import REPO_ROOT, CrdCatalog, is_custom_resource, vendored_catalog

OVERLAYS_DIR = REPO_ROOT / "deploy" / "k8s" / "overlays"
FIXTURES_DIR = Path(__file__).parent / "fixtures"


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects that kustomize renders from ``directory``."""
    result = subprocess.run(
        kustomize_command(directory), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kustomize failed on {directory}:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def custom_resource_errors(catalog: CrdCatalog, objects: list[dict[str, Any]]) -> list[str]:
    """Every error of every custom resource, each prefixed with the object it belongs to."""
    return [
        f"{obj['kind']}/{obj.get('metadata', {}).get('name')} {error}"
        for obj in objects
        if is_custom_resource(obj)
        for error in catalog.errors(obj)
    ]


@pytest.fixture(scope="module")
def catalog() -> CrdCatalog:
    return vendored_catalog()


def _overlays() -> list[Any]:
    return [
        pytest.param(path, id=path.name)
        for path in sorted(OVERLAYS_DIR.iterdir())
        if (path / "kustomization.yaml").is_file()
    ]


@pytest.mark.parametrize("overlay", _overlays())
def test_every_custom_resource_of_the_overlay_matches_its_published_crd(
    catalog: CrdCatalog, overlay: Path
) -> None:
    objects = render(overlay)
    assert any(is_custom_resource(obj) for obj in objects), f"{overlay} renders no custom resource"
    errors = custom_resource_errors(catalog, objects)
    assert not errors, "\n".join(errors)


def test_the_valid_fixtures_render_and_match_their_crds(catalog: CrdCatalog) -> None:
    objects = render(FIXTURES_DIR / "valid")
    assert sum(is_custom_resource(obj) for obj in objects) == len(objects) - 1
    assert custom_resource_errors(catalog, objects) == []


def test_each_mistake_in_the_invalid_fixtures_is_reported_with_its_path(
    catalog: CrdCatalog,
) -> None:
    errors = custom_resource_errors(catalog, render(FIXTURES_DIR / "invalid"))
    assert sorted(errors) == [
        "IngressRoute/no-routes $.spec: 'routes' is a required property",
        "IngressRoute/typo $.spec.routes[0]: Additional properties are not allowed "
        "('servcies' was unexpected)",
        "Middleware/wrong-type $.spec.rateLimit.average: 'lots' is not of type 'integer'",
        "Widget/unknown-kind $: no vendored CRD defines example.com/v1 Widget",
    ]
