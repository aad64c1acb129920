"""Each workspace's engine: built in by default; owners and admins choose n8n or an
OpenAI-compatible API; secrets and keys are stored encrypted and never shown; URLs must not
point inside our network unless the deployment allows it.

Engines are saved through an app that allows private destinations, so no name needs to
resolve; the refusal of internal addresses has its own tests on a strict app."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.fernet import Fernet

from creator.models import EngineSettings

IdentityFor = Callable[[UUID, str], dict[str, str]]
StoredEngine = Callable[[UUID], Awaitable[EngineSettings | None]]

ENGINE_URL = "/v1/creator/engine"
SECRET = "n8n-creator-secret-0123456789"
API_KEY = "sk-test-0123456789abcdef"
WEBHOOK = "https://n8n.example.com/webhook/bai"
N8N = {"type": "n8n", "webhook_url": WEBHOOK, "secret": SECRET, "deadline_seconds": 900}
OPENAI = {
    "type": "openai_compatible",
    "base_url": "https://llm.example.com/v1",
    "model": "gpt-4o-mini",
    "api_key": API_KEY,
}


async def put_engine(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await client.put(ENGINE_URL, json=body, headers=headers)


# ---- reading and choosing ----------------------------------------------------------------
async def test_a_workspace_that_never_chose_an_engine_uses_the_builtin_one(
    client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    response = await client.get(ENGINE_URL, headers=identity_for(tenant, "viewer"))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "builtin"
    assert response.json()["webhook_url"] is None
    assert response.json()["updated_at"] is None


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_owners_and_admins_choose_n8n_and_its_secret_is_stored_encrypted(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
    engine_box: Fernet,
    role: str,
) -> None:
    response = await put_engine(private_client, identity_for(tenant, role), N8N)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["type"], answer["webhook_url"], answer["deadline_seconds"]) == (
        "n8n",
        WEBHOOK,
        900,
    )
    assert "secret" not in answer
    assert SECRET not in response.text
    row = await stored_engine(tenant)
    assert row is not None
    assert (row.engine, row.webhook_url, row.deadline_seconds) == ("n8n", WEBHOOK, 900)
    assert row.secret is not None
    assert SECRET.encode() not in row.secret
    assert engine_box.decrypt(row.secret).decode() == SECRET


async def test_reading_the_n8n_engine_never_shows_its_secret(
    private_client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    assert (await put_engine(private_client, identity_for(tenant, "owner"), N8N)).status_code == 200

    response = await private_client.get(ENGINE_URL, headers=identity_for(tenant, "viewer"))

    assert response.status_code == 200, response.text
    assert (response.json()["type"], response.json()["webhook_url"]) == ("n8n", WEBHOOK)
    assert "secret" not in response.json()
    assert SECRET not in response.text


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_editors_and_viewers_may_not_choose_the_engine(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
    role: str,
) -> None:
    response = await put_engine(client, identity_for(tenant, role), N8N)

    assert response.status_code == 403, response.text
    assert await stored_engine(tenant) is None


async def test_another_workspace_keeps_the_builtin_engine(
    private_client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    assert (await put_engine(private_client, identity_for(tenant, "owner"), N8N)).status_code == 200

    response = await private_client.get(ENGINE_URL, headers=identity_for(uuid4(), "owner"))

    assert response.status_code == 200, response.text
    assert (response.json()["type"], response.json()["webhook_url"]) == ("builtin", None)


async def test_switching_back_to_builtin_forgets_the_workflow_and_its_secret(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
) -> None:
    owner = identity_for(tenant, "owner")
    assert (await put_engine(private_client, owner, N8N)).status_code == 200

    response = await put_engine(private_client, owner, {"type": "builtin"})

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "builtin"
    assert response.json()["webhook_url"] is None
    assert response.json()["deadline_seconds"] is None
    row = await stored_engine(tenant)
    assert row is not None
    assert (row.engine, row.webhook_url, row.secret, row.accept_secret_header) == (
        "builtin",
        None,
        None,
        False,
    )
    read = await private_client.get(ENGINE_URL, headers=owner)
    assert (read.json()["type"], read.json()["webhook_url"]) == ("builtin", None)


async def test_changing_the_engine_moves_its_updated_at(
    private_client: httpx.AsyncClient, tenant: UUID, identity_for: IdentityFor
) -> None:
    owner = identity_for(tenant, "owner")
    first = await put_engine(private_client, owner, N8N)

    second = await put_engine(private_client, owner, {"type": "builtin"})

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["updated_at"] > first.json()["updated_at"]
    read = await private_client.get(ENGINE_URL, headers=owner)
    assert read.json()["updated_at"] == second.json()["updated_at"]


async def test_an_openai_compatible_engine_keeps_its_key_encrypted_and_never_shows_it(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
    engine_box: Fernet,
) -> None:
    owner = identity_for(tenant, "owner")

    response = await put_engine(private_client, owner, OPENAI)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["type"], answer["base_url"], answer["model"]) == (
        "openai_compatible",
        "https://llm.example.com/v1",
        "gpt-4o-mini",
    )
    assert (answer["webhook_url"], answer["deadline_seconds"]) == (None, None)
    assert "api_key" not in answer
    read = await private_client.get(ENGINE_URL, headers=owner)
    assert read.json()["model"] == "gpt-4o-mini"
    for text in (response.text, read.text):
        assert API_KEY not in text
    row = await stored_engine(tenant)
    assert row is not None
    assert (row.engine, row.base_url, row.model) == (
        "openai_compatible",
        "https://llm.example.com/v1",
        "gpt-4o-mini",
    )
    assert row.api_key is not None
    assert API_KEY.encode() not in row.api_key
    assert engine_box.decrypt(row.api_key).decode() == API_KEY
    assert (row.webhook_url, row.secret) == (None, None)


# ---- validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {"type": "n8n", "webhook_url": WEBHOOK},
        {"type": "n8n", "webhook_url": WEBHOOK, "secret": "too-short"},
        {"type": "n8n", "webhook_url": "not a url", "secret": SECRET},
        {"type": "n8n", "webhook_url": "ftp://n8n.example.com/webhook", "secret": SECRET},
        {"type": "zapier", "webhook_url": WEBHOOK, "secret": SECRET},
        {"webhook_url": WEBHOOK, "secret": SECRET},
        {**N8N, "deadline_seconds": 29},
        {**N8N, "deadline_seconds": 86_401},
        {key: value for key, value in OPENAI.items() if key != "api_key"},
        {**OPENAI, "base_url": "file:///etc/passwd"},
        {**N8N, "webhook_url": "https://n8n.example.com/" + "a" * 2000},
        {**OPENAI, "base_url": "https://llm.example.com/" + "v" * 2000},
    ],
    ids=[
        "missing-secret",
        "short-secret",
        "not-a-url",
        "not-http",
        "unknown-type",
        "no-type",
        "deadline-too-short",
        "deadline-too-long",
        "openai-without-key",
        "openai-not-http",
        "webhook-url-too-long",
        "base-url-too-long",
    ],
)
async def test_an_invalid_engine_is_422_and_nothing_is_stored(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
    body: dict[str, Any],
) -> None:
    response = await put_engine(private_client, identity_for(tenant, "owner"), body)

    assert response.status_code == 422, response.text
    assert await stored_engine(tenant) is None
    assert SECRET not in response.text


async def test_an_invalid_engine_leaves_the_one_before_in_place(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
    engine_box: Fernet,
) -> None:
    owner = identity_for(tenant, "owner")
    assert (await put_engine(private_client, owner, N8N)).status_code == 200

    response = await put_engine(
        private_client, owner, {**N8N, "secret": "short", "webhook_url": "x"}
    )

    assert response.status_code == 422, response.text
    row = await stored_engine(tenant)
    assert row is not None
    assert (row.engine, row.webhook_url) == ("n8n", WEBHOOK)
    assert row.secret is not None
    assert engine_box.decrypt(row.secret).decode() == SECRET


# ---- destinations ------------------------------------------------------------------------
INTERNAL = [
    "http://127.0.0.1:5678/webhook/bai",
    "http://169.254.169.254/latest",
    "http://0x7f000001/",
    "http://[::1]:5678/webhook/bai",
]


@pytest.mark.parametrize("url", INTERNAL)
@pytest.mark.parametrize(
    ("field", "body"),
    [("webhook_url", N8N), ("base_url", OPENAI)],
    ids=["n8n", "openai_compatible"],
)
async def test_an_engine_on_an_internal_address_is_refused_naming_the_field(
    strict_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
    url: str,
    field: str,
    body: dict[str, Any],
) -> None:
    response = await put_engine(strict_client, identity_for(tenant, "owner"), {**body, field: url})

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", field]
    assert field in response.json()["detail"]
    assert await stored_engine(tenant) is None


async def test_an_internal_workflow_is_accepted_where_the_deployment_allows_it(
    private_client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    stored_engine: StoredEngine,
) -> None:
    body = {**N8N, "webhook_url": INTERNAL[0]}

    response = await put_engine(private_client, identity_for(tenant, "owner"), body)

    assert response.status_code == 200, response.text
    row = await stored_engine(tenant)
    assert row is not None
    assert (row.engine, row.webhook_url) == ("n8n", INTERNAL[0])
