"""The n8n workflows we ship to tenants (deploy/n8n) implement our signed contract.

They cannot run here (n8n is not part of the stack), so these tests read the exported JSON:
its shape is what ``n8n import:workflow`` takes, the nodes form one chain from the Webhook
to the callback, no secret is pasted in, and the signing expressions, rendered as n8n
renders them, give the very header ``bai_platform.webhooks`` verifies.
"""

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bai_platform.webhooks import sign, verify_signature

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "n8n"
GENERATION = DEPLOY / "bai-generation.workflow.json"
PUBLISHING = DEPLOY / "bai-publishing.workflow.json"
WORKFLOWS = {"generation": (GENERATION, "bai-generate"), "publishing": (PUBLISHING, "bai-publish")}

NODE_KEYS = ("id", "name", "type", "typeVersion", "position", "parameters")
STICKY = "n8n-nodes-base.stickyNote"
WEBHOOK = "n8n-nodes-base.webhook"
CRYPTO = "n8n-nodes-base.crypto"
CODE = "n8n-nodes-base.code"
HTTP = "n8n-nodes-base.httpRequest"
SECRET_NAMES = {"secret", "hmacsecret", "apikey", "api_key", "token", "password", "privatekey"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# `{{ $json.name }}` inside an n8n expression; the tests' stand-in for n8n's evaluator.
JSON_FIELD = re.compile(r"\{\{\s*\$json\.(\w+)\s*\}\}")

Workflow = dict[str, Any]
Node = dict[str, Any]


def load(path: Path) -> Workflow:
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict)
    return workflow


@pytest.fixture(params=sorted(WORKFLOWS))
def shipped(request: pytest.FixtureRequest) -> tuple[Workflow, str]:
    path, webhook_path = WORKFLOWS[request.param]
    return load(path), webhook_path


def working_nodes(workflow: Workflow) -> list[Node]:
    """Every node but the sticky notes (comments, never connected)."""
    return [node for node in workflow["nodes"] if node["type"] != STICKY]


def by_name(workflow: Workflow) -> dict[str, Node]:
    return {node["name"]: node for node in workflow["nodes"]}


def chain(workflow: Workflow) -> list[Node]:
    """The nodes in execution order, following each node's only main output."""
    nodes, connections = by_name(workflow), workflow["connections"]
    (start,) = [node for node in working_nodes(workflow) if node["type"] == WEBHOOK]
    order = [start]
    while order[-1]["name"] in connections:
        outputs = connections[order[-1]["name"]]
        assert list(outputs) == ["main"], f"{order[-1]['name']}: only main connections"
        (branch,) = outputs["main"]
        (target,) = branch
        assert target["type"] == "main"
        assert target["index"] == 0
        assert target["node"] not in [node["name"] for node in order], "a loop"
        order.append(nodes[target["node"]])
    return order


def signer(workflow: Workflow) -> Node:
    """The Crypto node that signs the callback (the one right before the HTTP Request)."""
    order = chain(workflow)
    assert order[-2]["type"] == CRYPTO
    return order[-2]


def callback_request(workflow: Workflow) -> Node:
    node = chain(workflow)[-1]
    assert node["type"] == HTTP
    return node


def callback_code(workflow: Workflow) -> str:
    node = by_name(workflow)["Callback body"]
    assert node["type"] == CODE
    code = node["parameters"]["jsCode"]
    assert isinstance(code, str)
    return code


def render(expression: str, item: dict[str, str]) -> str:
    """What n8n makes of a string parameter for ``item``: ``=`` marks an expression."""
    assert expression.startswith("="), "an expression, not a literal"
    return JSON_FIELD.sub(lambda field: item[field.group(1)], expression[1:])


def headers_of(node: Node) -> dict[str, str]:
    parameters = node["parameters"]["headerParameters"]["parameters"]
    return {header["name"]: header["value"] for header in parameters}


def literal_secrets(value: object, where: str = "") -> list[str]:
    """Parameters named like a secret that hold a literal (not an expression)."""
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            named_secret = str(key).replace("-", "").lower() in SECRET_NAMES
            if named_secret and isinstance(inner, str) and inner and not inner.startswith("="):
                found.append(f"{where}.{key}")
            found += literal_secrets(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += literal_secrets(inner, f"{where}[{index}]")
    return found


# ---- shape: what n8n imports --------------------------------------------------------------
def test_both_workflows_are_n8n_exports(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    for key in ("name", "id", "nodes", "connections", "settings"):
        assert key in workflow, key
    assert isinstance(workflow["id"], str)
    assert workflow["id"].isalnum()
    assert workflow["settings"]["executionOrder"] == "v1"
    assert workflow.get("active") is False, "imported inactive; the tenant activates it"
    for node in workflow["nodes"]:
        for key in NODE_KEYS:
            assert key in node, f"{node.get('name')}: {key}"
        assert UUID.match(node["id"]), node["name"]
        assert isinstance(node["parameters"], dict)
        assert len(node["position"]) == 2
        assert all(isinstance(axis, int | float) for axis in node["position"])
    names = [node["name"] for node in workflow["nodes"]]
    assert len(names) == len(set(names)), "node names are unique"
    ids = [node["id"] for node in workflow["nodes"]]
    assert len(ids) == len(set(ids)), "node ids are unique"


def test_the_two_workflows_have_their_own_ids() -> None:
    generation, publishing = load(GENERATION), load(PUBLISHING)
    assert generation["id"] != publishing["id"]
    assert generation["name"] != publishing["name"]
    for node in generation["nodes"]:
        assert node["id"] not in {other["id"] for other in publishing["nodes"]}


def test_every_connection_names_existing_nodes(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    names = set(by_name(workflow))
    for source, outputs in workflow["connections"].items():
        assert source in names, source
        for branch in outputs["main"]:
            for target in branch:
                assert target["node"] in names, target["node"]


def test_the_nodes_form_one_chain_from_the_webhook_to_the_callback(
    shipped: tuple[Workflow, str],
) -> None:
    workflow, _ = shipped
    order = chain(workflow)
    assert order[0]["type"] == WEBHOOK
    assert order[-1]["type"] == HTTP
    assert order[-1]["name"] not in workflow["connections"], "the callback ends the chain"
    assert {node["name"] for node in order} == {node["name"] for node in working_nodes(workflow)}
    xs = [node["position"][0] for node in order]
    assert xs == sorted(xs), "laid out left to right"
    assert len(set(xs)) == len(xs)


def test_the_webhook_answers_at_once_to_a_post_on_the_documented_path(
    shipped: tuple[Workflow, str],
) -> None:
    workflow, path = shipped
    webhook = chain(workflow)[0]
    assert webhook["typeVersion"] == 2
    parameters = webhook["parameters"]
    assert parameters["httpMethod"] == "POST"
    assert parameters["path"] == path
    assert parameters["responseMode"] == "onReceived"
    code = parameters["options"]["responseCode"]["values"]
    assert code["responseCode"] == "customCode"
    assert code["customCode"] == 202
    # The raw bytes are needed to check our signature; the parsed body stays at $json.body.
    assert parameters["options"]["rawBody"] is True


def test_the_documented_work_nodes_are_there() -> None:
    generation, publishing = by_name(load(GENERATION)), by_name(load(PUBLISHING))
    assert generation["Write the post"]["type"] == CODE
    assert publishing["Post it"]["type"] == "n8n-nodes-base.noOp"
    assert publishing["Published URL"]["type"] == CODE
    # Their failures become "failed" callbacks instead of silent timeouts.
    assert generation["Write the post"]["onError"] == "continueRegularOutput"
    assert publishing["Published URL"]["onError"] == "continueRegularOutput"
    assert any(
        node["type"] == STICKY and "AI node" in node["parameters"]["content"]
        for node in generation.values()
    )
    assert any(
        node["type"] == STICKY and "Post it" in node["parameters"]["content"]
        for node in publishing.values()
    )


# ---- no secret in the workflow ------------------------------------------------------------
def test_no_secret_is_pasted_into_the_workflow(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    for node in workflow["nodes"]:
        assert literal_secrets(node["parameters"], node["name"]) == []
        assert "secret" not in {key.lower() for key in node["parameters"]}


def test_every_crypto_node_reads_the_secret_from_a_crypto_credential(
    shipped: tuple[Workflow, str],
) -> None:
    workflow, _ = shipped
    cryptos = [node for node in workflow["nodes"] if node["type"] == CRYPTO]
    assert len(cryptos) == 2, "one checks our signature, one signs the callback"
    for node in cryptos:
        assert node["typeVersion"] == 2, "v2 takes the HMAC secret from a credential"
        assert list(node["credentials"]) == ["crypto"]
        reference = node["credentials"]["crypto"]
        assert reference["name"] == "B.A.I. signing secret"
        assert reference["id"] == "REPLACE_WITH_CREDENTIAL_ID", "no tenant's credential id"
        assert node["parameters"]["action"] == "hmac"
        assert node["parameters"]["type"] == "SHA256"
        assert node["parameters"]["encoding"] == "hex"


# ---- the jobs we send are checked ---------------------------------------------------------
def test_only_jobs_signed_by_us_go_on(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    read, check, accept = chain(workflow)[1:4]
    assert read["type"] == CODE
    assert "x-bai-timestamp" in read["parameters"]["jsCode"]
    assert "x-bai-signature" in read["parameters"]["jsCode"]
    assert "getBinaryDataBuffer(0, 'data')" in read["parameters"]["jsCode"], "the raw bytes"
    assert "300" in read["parameters"]["jsCode"], "the 5-minute window"
    assert "timestamp + '.' + raw" in read["parameters"]["jsCode"]
    assert check["type"] == CRYPTO
    assert check["parameters"]["value"] == "={{ $json.signed_text }}"
    assert check["parameters"]["dataPropertyName"] == "expected"
    assert accept["type"] == CODE
    assert "'v1='" in accept["parameters"]["jsCode"]
    assert "throw new Error" in accept["parameters"]["jsCode"]
    assert "$('Webhook').first().json.body" in accept["parameters"]["jsCode"]
    for node in (read, accept):
        assert "onError" not in node, "a job that fails the check must stop the run"


# ---- the callbacks are signed as we verify them -------------------------------------------
def test_the_callback_is_signed_over_timestamp_dot_body(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    parameters = signer(workflow)["parameters"]
    assert parameters["value"] == "={{ $json.timestamp }}.{{ $json.body }}"
    assert parameters["type"] == "SHA256"
    assert parameters["encoding"] == "hex"
    assert parameters["dataPropertyName"] == "signature"


def test_the_signed_bytes_are_the_sent_bytes(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    node = callback_request(workflow)
    assert node["typeVersion"] == 4.2
    parameters = node["parameters"]
    assert parameters["method"] == "POST"
    assert parameters["url"] == "={{ $json.callback_url }}"
    assert parameters["sendBody"] is True
    assert parameters["contentType"] == "raw", "sent as-is, never re-serialised"
    assert parameters["rawContentType"] == "application/json"
    assert parameters["body"] == "={{ $json.body }}"
    assert parameters["sendHeaders"] is True
    assert headers_of(node) == {
        "X-BAI-Timestamp": "={{ $json.timestamp }}",
        "X-BAI-Signature": "=v1={{ $json.signature }}",
    }
    assert node["retryOnFail"] is True
    assert node["maxTries"] == 3


def test_the_rendered_signature_is_the_one_we_verify(shipped: tuple[Workflow, str]) -> None:
    workflow, _ = shipped
    secret = "a-tenant-secret-of-32-characters"
    timestamp = 1_767_000_000
    # What "Callback body" outputs: JSON.stringify keeps non-ASCII text as it is.
    body = json.dumps(
        {
            "job_id": "gen_abc",
            "status": "completed",
            "content": {"text": "Café en terrasse — à bientôt ☀️", "hashtags": ["été"]},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    item = {"body": body, "timestamp": str(timestamp), "callback_url": "https://x/cb"}

    # The Crypto node: HMAC-SHA256 of its rendered value with the credential's secret, hex.
    value = render(signer(workflow)["parameters"]["value"], item)
    item["signature"] = hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()

    # The HTTP Request node: the headers and the body it sends for that item.
    request = callback_request(workflow)
    headers = {name: render(value, item) for name, value in headers_of(request).items()}
    sent = render(request["parameters"]["body"], item).encode()

    assert sent == body.encode()
    assert headers["X-BAI-Timestamp"] == str(timestamp)
    assert headers["X-BAI-Signature"] == sign(secret, timestamp, sent)
    verify_signature(
        secret=secret,
        timestamp=headers["X-BAI-Timestamp"],
        signature=headers["X-BAI-Signature"],
        body=sent,
        now=timestamp + 60.0,
    )


def test_the_callback_carries_a_fresh_timestamp_and_the_jobs_callback_url(
    shipped: tuple[Workflow, str],
) -> None:
    workflow, _ = shipped
    code = callback_code(workflow)
    assert "body: JSON.stringify(reply)" in code
    assert "timestamp: String(Math.floor(Date.now() / 1000))" in code
    assert "callback_url: job.callback_url" in code
    assert "$('Webhook').first().json.body" in code
    assert "job_id: job.job_id" in code
    assert "status: 'failed'" in code
    assert "error:" in code


def test_the_generation_callback_has_what_the_creator_reads() -> None:
    code = callback_code(load(GENERATION))
    assert "status: 'completed'" in code
    assert "content: {" in code
    for field in ("text", "title", "hashtags", "call_to_action", "image_prompt", "alt_text"):
        assert f"{field}:" in code, field


def test_the_publishing_callback_has_what_the_planner_reads() -> None:
    code = callback_code(load(PUBLISHING))
    assert "status: 'published'" in code
    assert "url:" in code


def test_the_draft_keeps_within_the_channels_limits() -> None:
    code = by_name(load(GENERATION))["Write the post"]["parameters"]["jsCode"]
    assert "limits.max_chars" in code
    assert "limits.max_hashtags" in code
    assert "voice.keywords" in code
    assert "campaign.brief" in code


def test_an_unplugged_publishing_workflow_reports_failure_not_success() -> None:
    code = by_name(load(PUBLISHING))["Published URL"]["parameters"]["jsCode"]
    assert "answer.kind === 'publish'" in code
    assert "throw new Error('no social network node is plugged in yet" in code


# ---- the README --------------------------------------------------------------------------
def test_the_readme_tells_how_to_plug_them_in() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "PUT /v1/creator/engine" in readme
    assert "PUT /v1/planner/publishing-target" in readme
    assert "/webhook/bai-generate" in readme
    assert "/webhook/bai-publish" in readme
    assert "**Crypto**" in readme
    assert "Hmac Secret" in readme
    assert "B.A.I. signing secret" in readme
    assert "BAI_ALLOW_PRIVATE_DESTINATIONS=true" in readme
    for name in (GENERATION.name, PUBLISHING.name):
        assert f"n8n import:workflow --input=deploy/n8n/{name}" in readme
