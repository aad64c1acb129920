"""The CRD-to-JSON-Schema conversion is strict where the API server prunes, and lenient where
Kubernetes' own extensions allow more than plain JSON Schema; real examples of every vendored
kind pass, and an unknown field, a wrong type and a missing required field are each rejected."""

import copy
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import yaml

from tests.k8s.crd_schema import (
    NEWER_FIELDS,
    CrdCatalog,
    to_json_schema,
    validation_errors,
    vendored_catalog,
)

VALID_FIXTURES = Path(__file__).parent / "fixtures" / "valid"

# Per kind: a field set to a value of the wrong type, and a required field taken away
# (paths into the valid fixture of that kind), with the error each must produce.
MISTAKES: dict[str, dict[str, tuple[list[Any], Any, str]]] = {
    "Cluster": {
        "wrong_type": (["spec", "instances"], "three", "$.spec.instances"),
        "missing": (["spec", "instances"], None, "$.spec"),
    },
    "ScheduledBackup": {
        "wrong_type": (["spec", "schedule"], 2, "$.spec.schedule"),
        "missing": (["spec", "schedule"], None, "$.spec"),
    },
    "Issuer": {
        "wrong_type": (
            ["spec", "selfSigned", "crlDistributionPoints"],
            "http://crl",
            "$.spec.selfSigned.crlDistributionPoints",
        ),
        "missing": (["spec"], None, "$"),
    },
    "Certificate": {
        "wrong_type": (["spec", "isCA"], "yes", "$.spec.isCA"),
        "missing": (["spec", "secretName"], None, "$.spec"),
    },
    "IngressRoute": {
        "wrong_type": (["spec", "routes", 0, "priority"], "high", "$.spec.routes[0].priority"),
        "missing": (["spec", "routes", 0, "match"], None, "$.spec.routes[0]"),
    },
    "Middleware": {
        "wrong_type": (
            ["spec", "headers", "customRequestHeaders"],
            ["x"],
            "$.spec.headers.customRequestHeaders",
        ),
        "missing": (["spec"], None, "$"),
    },
    "TLSOption": {
        "wrong_type": (["spec", "sniStrict"], "yes", "$.spec.sniStrict"),
        "missing": (["spec"], None, "$"),
    },
    "ServersTransport": {
        "wrong_type": (["spec", "serverName"], 42, "$.spec.serverName"),
        "missing": (["spec"], None, "$"),
    },
}


def _fixture_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(VALID_FIXTURES.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return [obj for obj in objects if obj["kind"] in MISTAKES]


def _example(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(obj for obj in _fixture_objects() if obj["kind"] == kind))


def _parent(obj: Any, path: list[Any]) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


@pytest.fixture(scope="module")
def catalog() -> CrdCatalog:
    return vendored_catalog()


@pytest.mark.parametrize("kind", sorted(MISTAKES))
def test_a_real_example_passes(catalog: CrdCatalog, kind: str) -> None:
    assert catalog.errors(_example(kind)) == []


@pytest.mark.parametrize("kind", sorted(MISTAKES))
def test_an_unknown_field_is_rejected(catalog: CrdCatalog, kind: str) -> None:
    resource = _example(kind)
    resource["spec"]["colour"] = "blue"
    assert catalog.errors(resource) == [
        "$.spec: Additional properties are not allowed ('colour' was unexpected)"
    ]


@pytest.mark.parametrize("kind", sorted(MISTAKES))
def test_a_wrong_type_is_rejected(catalog: CrdCatalog, kind: str) -> None:
    path, value, where = MISTAKES[kind]["wrong_type"]
    resource = _example(kind)
    _parent(resource, path)[path[-1]] = value
    errors = catalog.errors(resource)
    assert len(errors) == 1
    assert errors[0].startswith(f"{where}: ")
    assert "is not of type" in errors[0]


@pytest.mark.parametrize("kind", sorted(MISTAKES))
def test_a_missing_required_field_is_rejected(catalog: CrdCatalog, kind: str) -> None:
    path, _, where = MISTAKES[kind]["missing"]
    resource = _example(kind)
    del _parent(resource, path)[path[-1]]
    assert catalog.errors(resource) == [f"{where}: '{path[-1]}' is a required property"]


def test_all_errors_are_reported_each_with_its_path(catalog: CrdCatalog) -> None:
    resource = _example("IngressRoute")
    resource["metadata"]["lables"] = {"a": "b"}
    resource["spec"]["routes"][0]["services"][0]["port"] = 8000.5
    resource["spec"]["tls"]["secretName"] = 1
    assert catalog.errors(resource) == [
        "$.metadata: Additional properties are not allowed ('lables' was unexpected)",
        "$.spec.routes[0].services[0].port: 8000.5 is not valid under any of the given schemas",
        "$.spec.tls.secretName: 1 is not of type 'string'",
    ]


def test_a_kind_without_a_vendored_crd_is_an_error(catalog: CrdCatalog) -> None:
    resource = {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteHTTP3", "spec": {}}
    assert catalog.errors(resource) == [
        "$: no vendored CRD defines traefik.io/v1alpha1 IngressRouteHTTP3"
    ]


def _schema(spec: dict[str, Any]) -> dict[str, Any]:
    return to_json_schema({"type": "object", "properties": {"spec": spec}})


def test_int_or_string_accepts_both_and_nothing_else() -> None:
    schema = _schema({"x-kubernetes-int-or-string": True})
    assert validation_errors({"spec": 8000}, schema) == []
    assert validation_errors({"spec": "http"}, schema) == []
    assert validation_errors({"spec": [8000]}, schema) != []


def test_nullable_accepts_null_as_well() -> None:
    schema = _schema({"type": "string", "enum": ["a"], "nullable": True})
    assert validation_errors({"spec": None}, schema) == []
    assert validation_errors({"spec": "b"}, schema) != []


def test_preserve_unknown_fields_keeps_an_object_open() -> None:
    schema = _schema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"known": {"type": "string"}},
        }
    )
    assert validation_errors({"spec": {"known": "a", "extra": 1}}, schema) == []
    assert validation_errors({"spec": {"known": 1}}, schema) != []


def test_an_embedded_resource_may_carry_api_version_kind_and_metadata() -> None:
    template = {
        "type": "object",
        "x-kubernetes-embedded-resource": True,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    schema = _schema(template)
    embedded = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"a": "b"}}
    assert validation_errors({"spec": embedded}, schema) == []
    assert validation_errors({"spec": {**embedded, "extra": 1}}, schema) != []


def test_schemas_under_any_of_restate_fields_and_are_not_closed() -> None:
    schema = _schema(
        {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "anyOf": [{"properties": {"a": {"minLength": 1}}, "required": ["a"]}],
        }
    )
    assert validation_errors({"spec": {"a": "x", "b": "y"}}, schema) == []
    assert validation_errors({"spec": {"b": "y"}}, schema) != []


def test_top_level_metadata_is_checked_as_object_meta() -> None:
    schema = to_json_schema({"type": "object", "properties": {"metadata": {"type": "object"}}})
    good = {"metadata": {"name": "a", "labels": {"k": "v"}, "annotations": {"k": "v"}}}
    assert validation_errors(good, schema) == []
    assert validation_errors({"metadata": {"labels": {"k": 1}}}, schema) == [
        "$.metadata.labels.k: 1 is not of type 'string'"
    ]


def test_a_newer_field_is_accepted_only_where_it_is_declared(catalog: CrdCatalog) -> None:
    limited: dict[str, Any] = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": "auth"},
        "spec": {"forwardAuth": {"address": "http://gateway", "maxResponseBodySize": 65536}},
    }
    assert catalog.errors(limited) == []
    limited["spec"]["forwardAuth"]["maxResponseBodySize"] = "big"
    assert len(catalog.errors(limited)) == 1
    misplaced: dict[str, Any] = {**limited, "spec": {"forwardAuth": {"address": "http://g"}}}
    misplaced["spec"]["maxResponseBodySize"] = 1
    assert len(catalog.errors(misplaced)) == 1


def _crd_with_spec(spec: dict[str, Any]) -> dict[str, Any]:
    openapi = {"type": "object", "properties": {"spec": spec}}
    return {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "schema": {"openAPIV3Schema": openapi}}],
        },
    }


def test_a_newer_field_already_in_the_vendored_crd_is_an_error() -> None:
    crd = _crd_with_spec({"type": "object", "properties": {"max": {"type": "integer"}}})
    newer = {("example.com", "v1", "Widget"): {"spec.max": {"type": "integer"}}}
    with patch.dict(NEWER_FIELDS, newer), pytest.raises(ValueError, match="already in the vendor"):
        CrdCatalog.from_documents([crd])
