"""The mining workflow we ship to tenants (deploy/n8n/bai-mining.workflow.json) implements
our signed contract, as creator's tests check the generation and publishing ones.

n8n cannot run here, so these tests read the exported JSON: its shape is what
``n8n import:workflow`` takes, the nodes form one chain from the Webhook to the callback, no
secret is pasted in, the signing expressions, rendered as n8n renders them, give the very
header ``bai_platform.webhooks`` verifies, and the pages it builds are ones
``mining.service.pages`` takes.
"""

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

from bai_platform.webhooks import sign, verify_signature
from mining.service.pages import read_page

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "n8n"
MINING = DEPLOY / "bai-mining.workflow.json"
OTHERS = (DEPLOY / "bai-generation.workflow.json", DEPLOY / "bai-publishing.workflow.json")

STICKY = "n8n-nodes-base.stickyNote"
WEBHOOK = "n8n-nodes-base.webhook"
CRYPTO = "n8n-nodes-base.crypto"
CODE = "n8n-nodes-base.code"
HTTP = "n8n-nodes-base.httpRequest"
SECRET_NAMES = {"secret", "hmacsecret", "apikey", "api_key", "token", "password", "privatekey"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JSON_FIELD = re.compile(r"\{\{\s*\$json\.(\w+)\s*\}\}")

Workflow = dict[str, Any]
Node = dict[str, Any]


def load(path: Path = MINING) -> Workflow:
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict)
    return workflow


def by_name(workflow: Workflow) -> dict[str, Node]:
    return {node["name"]: node for node in workflow["nodes"]}


def chain(workflow: Workflow) -> list[Node]:
    """The nodes in execution order, following each node's only main output."""
    nodes, connections = by_name(workflow), workflow["connections"]
    (start,) = [n for n in workflow["nodes"] if n["type"] == WEBHOOK]
    order = [start]
    while order[-1]["name"] in connections:
        outputs = connections[order[-1]["name"]]
        assert list(outputs) == ["main"]
        ((target,),) = outputs["main"]
        assert (target["type"], target["index"]) == ("main", 0)
        assert target["node"] not in [n["name"] for n in order], "a loop"
        order.append(nodes[target["node"]])
    return order


def code_of(name: str) -> str:
    node = by_name(load())[name]
    assert node["type"] == CODE
    code = node["parameters"]["jsCode"]
    assert isinstance(code, str)
    return code


def render(expression: str, item: dict[str, str]) -> str:
    """What n8n makes of a string parameter for ``item``: ``=`` marks an expression."""
    assert expression.startswith("="), "an expression, not a literal"
    return JSON_FIELD.sub(lambda field: item[field.group(1)], expression[1:])


def literal_secrets(value: object, where: str = "") -> list[str]:
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


def test_the_workflow_is_an_n8n_export_with_its_own_ids() -> None:
    workflow = load()
    assert (workflow["id"], workflow["name"]) == ("BAIminingleads01", "B.A.I. mining")
    assert workflow["settings"]["executionOrder"] == "v1"
    assert workflow.get("active") is False
    for node in workflow["nodes"]:
        for key in ("id", "name", "type", "typeVersion", "position", "parameters"):
            assert key in node, f"{node.get('name')}: {key}"
        assert UUID.match(node["id"]), node["name"]
    others = [load(path) for path in OTHERS]
    taken = {node["id"] for other in others for node in other["nodes"]}
    assert not taken & {node["id"] for node in workflow["nodes"]}
    assert workflow["id"] not in {other["id"] for other in others}
    assert len(by_name(workflow)) == len(workflow["nodes"]), "node names are unique"


def test_the_nodes_form_one_chain_from_the_webhook_to_the_callback() -> None:
    workflow = load()
    order = chain(workflow)
    assert [node["name"] for node in order] == [
        "Webhook",
        "Read the signed job",
        "Check B.A.I.'s signature",
        "Accept only B.A.I.'s jobs",
        "Search the directory",
        "Leads from the answer",
        "Callback body",
        "Sign the callback",
        "Call back",
    ]
    working = {n["name"] for n in workflow["nodes"] if n["type"] != STICKY}
    assert {node["name"] for node in order} == working
    xs = [node["position"][0] for node in order]
    assert xs == sorted(xs)
    assert len(set(xs)) == len(xs)


def test_the_webhook_answers_at_once_on_the_documented_path_with_the_raw_body() -> None:
    webhook = chain(load())[0]
    parameters = webhook["parameters"]
    assert (webhook["typeVersion"], parameters["httpMethod"]) == (2, "POST")
    assert (parameters["path"], parameters["responseMode"]) == ("bai-mine", "onReceived")
    assert parameters["options"]["responseCode"]["values"]["customCode"] == 202
    assert parameters["options"]["rawBody"] is True


def test_only_jobs_signed_by_us_go_on() -> None:
    read, check, accept = chain(load())[1:4]
    assert "getBinaryDataBuffer(0, 'data')" in read["parameters"]["jsCode"]
    assert "timestamp + '.' + raw" in read["parameters"]["jsCode"]
    assert "300" in read["parameters"]["jsCode"]
    assert check["type"] == CRYPTO
    assert check["parameters"]["value"] == "={{ $json.signed_text }}"
    assert "'v1='" in accept["parameters"]["jsCode"]
    assert "throw new Error" in accept["parameters"]["jsCode"]
    for node in (read, accept):
        assert "onError" not in node, "a job that fails the check must stop the run"


def test_no_secret_is_pasted_in_and_both_crypto_nodes_use_the_credential() -> None:
    workflow = load()
    for node in workflow["nodes"]:
        assert literal_secrets(node["parameters"], node["name"]) == []
    cryptos = [node for node in workflow["nodes"] if node["type"] == CRYPTO]
    assert len(cryptos) == 2
    for node in cryptos:
        assert node["typeVersion"] == 2
        assert node["credentials"] == {
            "crypto": {"id": "REPLACE_WITH_CREDENTIAL_ID", "name": "B.A.I. signing secret"}
        }
        assert (node["parameters"]["action"], node["parameters"]["type"]) == ("hmac", "SHA256")


def test_the_directory_is_a_placeholder_whose_failures_become_failed_callbacks() -> None:
    nodes = by_name(load())
    search = nodes["Search the directory"]
    assert search["type"] == HTTP
    assert search["parameters"]["url"] == "https://directory.example/v1/search"
    queries = {q["name"]: q["value"] for q in search["parameters"]["queryParameters"]["parameters"]}
    assert queries["query"] == "={{ $json.params.query }}"
    assert search["onError"] == nodes["Leads from the answer"]["onError"] == "continueRegularOutput"
    leads = code_of("Leads from the answer")
    assert "throw new Error('no directory is plugged in yet" in leads
    for field in ("organisation:", "website:", "emails:", "phones:", "socials:", "addresses:"):
        assert field in leads, field
    assert any(
        node["type"] == STICKY and "Search the directory" in node["parameters"]["content"]
        for node in nodes.values()
    )


def test_the_callbacks_are_pages_within_the_jobs_limits_or_a_failure() -> None:
    code = code_of("Callback body")
    assert "$('Webhook').first().json.body" in code
    assert "body: JSON.stringify(reply)" in code
    assert "timestamp: String(Math.floor(Date.now() / 1000))" in code
    assert "callback_url: job.callback_url" in code
    assert "job.limits.max_items_per_page" in code
    assert "job.limits.max_pages" in code
    assert "page: index + 1" in code
    assert "final: index === pages - 1" in code
    assert "status: 'failed'" in code


def test_a_page_as_the_workflow_builds_it_is_signed_as_we_verify_and_taken() -> None:
    order = chain(load())
    signer, request = order[-2], order[-1]
    secret, timestamp = "a-tenant-secret-of-32-characters", 1_767_000_000
    # What "Callback body" outputs for one page (JSON.stringify keeps non-ASCII as it is).
    page = {
        "job_id": "ext_abcdefgh",
        "page": 1,
        "items": [
            {
                "organisation": "Café Olé",
                "website": "https://cafe-ole.example",
                "emails": [],
                "phones": ["912 345 678"],
                "socials": [],
                "addresses": ["Calle Mayor 1, Madrid"],
                "source_url": None,
                "data": {"rating": 4.5},
            }
        ],
        "final": True,
    }
    body = json.dumps(page, ensure_ascii=False, separators=(",", ":"))
    item = {"body": body, "timestamp": str(timestamp), "callback_url": "https://x/cb"}
    value = render(signer["parameters"]["value"], item)
    item["signature"] = hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()

    headers = {
        h["name"]: render(h["value"], item)
        for h in request["parameters"]["headerParameters"]["parameters"]
    }
    sent = render(request["parameters"]["body"], item).encode()

    assert (request["parameters"]["contentType"], request["retryOnFail"]) == ("raw", True)
    assert headers["X-BAI-Signature"] == sign(secret, timestamp, sent)
    verify_signature(
        secret=secret,
        timestamp=headers["X-BAI-Timestamp"],
        signature=headers["X-BAI-Signature"],
        body=sent,
        now=timestamp + 60.0,
    )
    taken = read_page(json.loads(sent), region="ES")
    assert (taken.final, taken.items[0].phones) == (True, ("+34912345678",))


def test_the_readme_tells_how_to_plug_it_in() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "PUT /v1/mining/workflow" in readme
    assert "/webhook/bai-mine" in readme
    assert "n8n import:workflow --input=deploy/n8n/bai-mining.workflow.json" in readme
    assert "--id=BAIminingleads01" in readme
    assert '"kind": "extract"' in readme
    assert "page 3 rejected: items[2].emails[0]: not an email" in readme
