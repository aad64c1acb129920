"""The manifests give every service the settings it reads in production, and nothing else.

A container's settings are its ``env`` plus the ConfigMaps of its ``envFrom`` (Secrets are
referenced by key, so only their names are known here).

- Every ``BAI_*`` name is a field of that service's settings class (``BAI_A__B``: field
  ``b`` of the nested model ``a``), so a typo cannot pass silently (pydantic-settings
  ignores unknown variables).
- Production needs a field when its default cannot serve a cluster:
  - it is a secret (in ``secret_fields``, or typed ``SecretStr``, nested models included);
  - its default names a loopback address (URLs, host, trusted proxies);
  - ``BAI_ENVIRONMENT`` (default ``dev``) and ``BAI_PORT`` (each class defaults to its
    local-stack port, the pods listen on 8000 and 8001);
  - ``DEPLOYMENT_SPECIFIC``: defaults that are placeholders of one installation.
- With the ConfigMaps' values and a strong stand-in for each Secret key, each settings
  class loads with ``environment=production`` (JSON values parse, secrets pass).
"""

import importlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from .conftest import OVERLAYS, SERVICES, Manifest, Render

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALWAYS = frozenset({"BAI_ENVIRONMENT", "BAI_PORT"})
# What a container that serves nothing (the migrate init container) does not need.
SERVING_ONLY = frozenset({"BAI_PORT"})
# ServiceSettings' nats_password and stream_replicas come with the NATS permissions work
# (branch natsauth). Until both fields are here their variables are accepted unchecked;
# once they are, this has no effect and may go.
AWAITED = frozenset({"BAI_NATS_PASSWORD", "BAI_STREAM_REPLICAS"})
# Billing's catalogue names Stripe Prices, which exist only in one Stripe account.
DEPLOYMENT_SPECIFIC = {"billing": frozenset({"BAI_PLANS"})}
# Stand-ins for Secret keys, shaped as their settings expect.
SECRET_STAND_INS = {
    "database-url": "postgresql+asyncpg://{service}:{strong}@bai-postgres-rw:5432/bai",
    "database-read-url": "postgresql+asyncpg://{service}:{strong}@bai-postgres-ro:5432/bai",
    "ratelimit-storage-url": "valkey://:{strong}@valkey:6379/0",
    "stripe-webhook-secrets": '["whsec_{strong}"]',
}
STRONG = "k8s-settings-test-stand-in-0123456789abcdef"


def settings_class(service: str) -> type[BaseSettings]:
    module = importlib.import_module(f"{service}.settings")
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, BaseSettings) and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{service}.settings defines one settings class"
    return classes[0]


def _holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in get_args(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Union:
        models = [
            a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        return models[0] if len(models) == 1 else None
    return None


def _fields(model: type[BaseModel], prefix: str = "BAI_") -> Iterator[tuple[str, Any, Any]]:
    """(variable, annotation, default) of every field, nested models' fields included."""
    for name, info in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        yield variable, info.annotation, info.get_default(call_default_factory=True)
        nested = _nested_model(info.annotation)
        if nested is not None:
            yield from _fields(nested, f"{variable}__")


def known_variables(cls: type[BaseSettings]) -> set[str]:
    known = {variable for variable, _, _ in _fields(cls)}
    return known if AWAITED & known else known | AWAITED


def needed_in_production(service: str, cls: type[BaseSettings]) -> set[str]:
    secrets = {f"BAI_{name.upper()}" for name in getattr(cls, "secret_fields", ())}
    for variable, annotation, default in _fields(cls):
        if _holds_secret(annotation) or any(host in repr(default) for host in LOOPBACK):
            secrets.add(variable)
    return secrets | ALWAYS | DEPLOYMENT_SPECIFIC.get(service, frozenset())


def container_env(manifests: list[Manifest], container: Mapping[str, Any]) -> dict[str, str | None]:
    """Name -> value (None: from a Secret key, recorded as ``secret:<key>``)."""
    maps = {m["metadata"]["name"]: m.get("data", {}) for m in manifests if m["kind"] == "ConfigMap"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env |= maps[source["configMapRef"]["name"]]
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = f"secret:{ref['key']}" if ref else item.get("value")
    return env


def service_containers(
    manifests: list[Manifest], service: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    for component in ("api", "worker"):
        deployment = next(
            m
            for m in manifests
            if m["kind"] == "Deployment" and m["metadata"]["name"] == f"{service}-{component}"
        )
        pod = deployment["spec"]["template"]["spec"]
        for container in (*pod.get("initContainers", []), *pod["containers"]):
            yield f"{service}-{component}/{container['name']}", container


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_bai_variable_is_a_setting_of_its_service(
    rendered: Render, overlay: str, service: str
) -> None:
    manifests = rendered(overlay)
    known = known_variables(settings_class(service))
    unknown = {
        f"{where}: {name}"
        for where, container in service_containers(manifests, service)
        for name in container_env(manifests, container)
        if name.startswith("BAI_") and name not in known
    }
    assert sorted(unknown) == []


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_production_needs_is_provided(
    rendered: Render, overlay: str, service: str
) -> None:
    manifests = rendered(overlay)
    needed = needed_in_production(service, settings_class(service))
    missing = {
        f"{where}: {name}"
        for where, container in service_containers(manifests, service)
        for name in _needed_by(where, needed) - container_env(manifests, container).keys()
    }
    assert sorted(missing) == []


def _needed_by(where: str, needed: set[str]) -> set[str]:
    return needed - SERVING_ONLY if where.endswith("/migrate") else needed


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_load_in_production_from_the_manifests(
    rendered: Render, overlay: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered(overlay)
    cls = settings_class(service)
    for where, container in service_containers(manifests, service):
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("BAI_")]:
                patch.delenv(name)
            for name, value in container_env(manifests, container).items():
                patch.setenv(name, _stand_in(value or "", service))
            settings: Any = cls()
            assert settings.environment == "production", where
            assert settings.service_name == service, where


def _stand_in(value: str, service: str) -> str:
    if not value.startswith("secret:"):
        return value
    template = SECRET_STAND_INS.get(value.removeprefix("secret:"), "{strong}")
    return template.format(service=service, strong=STRONG)


def test_the_rule_sees_what_production_needs() -> None:
    """Positive control: the rule names what the code is known to need in a cluster."""
    gateway = needed_in_production("gateway", settings_class("gateway"))
    assert {
        "BAI_KEY_ENCRYPTION_SECRET",
        "BAI_DATABASE_URL",
        "BAI_NATS_URL",
        "BAI_HOST",
        "BAI_PUBLIC_BASE_URL",
        "BAI_IDENTITY_JWKS_URL",
        "BAI_TRUSTED_PROXIES",
        "BAI_RATE_LIMITS__STORAGE_URL",
    } <= gateway
    assert "BAI_LOG_LEVEL" not in gateway
    assert "BAI_STRIPE_WEBHOOK_SECRETS" in needed_in_production(
        "billing", settings_class("billing")
    )
