"""Workspaces: invitations by signed link, roles, member management, switching."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from bai_contracts import SubscriptionChanged
from bai_platform.db import Database
from bai_platform.envelope import new_event
from gateway.events import on_subscription_changed
from gateway.settings import GatewaySettings

from .conftest import (
    PASSWORD,
    Account,
    assert_problem,
    forward_auth,
    identity_headers,
    sign_up,
    unique_email,
)


async def _invite(
    client: httpx.AsyncClient, inviter: Account, email: str, role: str = "editor"
) -> httpx.Response:
    headers = await identity_headers(client, inviter.access_token)
    return await client.post(
        "/v1/auth/invitations", json={"email": email, "role": role}, headers=headers
    )


async def _join(client: httpx.AsyncClient, inviter: Account, role: str) -> dict[str, Any]:
    """A new person invited with ``role`` who accepted; returns the token answer."""
    invitation = (await _invite(client, inviter, unique_email("member"), role)).json()
    accepted = await client.post(
        "/v1/auth/invitations/accept", json={"token": invitation["token"], "password": PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    body: dict[str, Any] = accepted.json()
    return body


async def _members(client: httpx.AsyncClient, bearer: str) -> dict[str, str]:
    response = await client.get("/v1/auth/members", headers=await identity_headers(client, bearer))
    return {m["user_id"]: m["role"] for m in response.json()["items"]}


async def test_invitation_link_is_shown_once_and_carries_its_token_in_the_fragment(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await _invite(client, account, unique_email("new"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["accept_url"].endswith(f"/invitations#token={body['token']}")
    listed = await client.get(
        "/v1/auth/invitations", headers=await identity_headers(client, account.access_token)
    )
    assert body["token"] not in listed.text


async def test_accepting_makes_a_new_member_with_the_invited_role(
    client: httpx.AsyncClient, account: Account
) -> None:
    joined = await _join(client, account, "viewer")
    assert joined["tenant_id"] == account.tenant_id
    assert (await _members(client, account.access_token))[joined["user_id"]] == "viewer"


async def test_an_existing_account_joins_with_its_password_and_switches_workspaces(
    client: httpx.AsyncClient, account: Account
) -> None:
    elsewhere = await sign_up(client)
    invitation = (await _invite(client, account, elsewhere.email)).json()
    wrong = await client.post(
        "/v1/auth/invitations/accept", json={"token": invitation["token"], "password": "x" * 12}
    )
    assert_problem(wrong, status=401, code="invalid_credentials")
    accepted = await client.post(
        "/v1/auth/invitations/accept", json={"token": invitation["token"], "password": PASSWORD}
    )
    assert accepted.json()["user_id"] == elsewhere.user_id
    headers = await identity_headers(client, elsewhere.access_token)
    workspaces = (await client.get("/v1/auth/workspaces", headers=headers)).json()["items"]
    assert {w["tenant_id"] for w in workspaces} == {elsewhere.tenant_id, account.tenant_id}
    switched = await client.post(
        "/v1/auth/switch", json={"tenant_id": account.tenant_id}, headers=headers
    )
    assert switched.json()["tenant_id"] == account.tenant_id


async def test_switching_to_a_workspace_one_is_not_in_is_404(
    client: httpx.AsyncClient, account: Account
) -> None:
    stranger = await sign_up(client)
    response = await client.post(
        "/v1/auth/switch",
        json={"tenant_id": stranger.tenant_id},
        headers=await identity_headers(client, account.access_token),
    )
    assert_problem(response, status=404, code="workspace_not_found")


async def test_an_invitation_works_once(client: httpx.AsyncClient, account: Account) -> None:
    invitation = (await _invite(client, account, unique_email("once"))).json()
    body = {"token": invitation["token"], "password": PASSWORD}
    assert (await client.post("/v1/auth/invitations/accept", json=body)).status_code == 200
    again = await client.post("/v1/auth/invitations/accept", json=body)
    assert_problem(again, status=404, code="invitation_not_valid")


async def test_a_revoked_invitation_cannot_be_accepted(
    client: httpx.AsyncClient, account: Account
) -> None:
    invitation = (await _invite(client, account, unique_email("revoked"))).json()
    headers = await identity_headers(client, account.access_token)
    revoked = await client.delete(f"/v1/auth/invitations/{invitation['id']}", headers=headers)
    assert revoked.status_code == 204
    accepted = await client.post(
        "/v1/auth/invitations/accept", json={"token": invitation["token"], "password": PASSWORD}
    )
    assert_problem(accepted, status=404, code="invitation_not_valid")


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_editors_and_viewers_cannot_manage_people(
    client: httpx.AsyncClient, account: Account, role: str
) -> None:
    member = await _join(client, account, role)
    headers = await identity_headers(client, member["access_token"])
    invite = await client.post(
        "/v1/auth/invitations", json={"email": unique_email(), "role": "viewer"}, headers=headers
    )
    assert_problem(invite, status=403, code="forbidden")
    promote = await client.patch(
        f"/v1/auth/members/{member['user_id']}", json={"role": "admin"}, headers=headers
    )
    assert_problem(promote, status=403, code="forbidden")


async def test_an_admin_cannot_grant_ownership(client: httpx.AsyncClient, account: Account) -> None:
    admin = await _join(client, account, "admin")
    response = await _invite(
        client,
        Account(
            email="",
            password="",
            workspace="",
            access_token=admin["access_token"],
            refresh_token="",
            tenant_id=account.tenant_id,
            user_id=admin["user_id"],
        ),
        unique_email(),
        role="owner",
    )
    assert_problem(response, status=403, code="forbidden")


async def test_the_last_owner_can_neither_leave_nor_be_demoted(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = await identity_headers(client, account.access_token)
    demote = await client.patch(
        f"/v1/auth/members/{account.user_id}", json={"role": "admin"}, headers=headers
    )
    assert_problem(demote, status=409, code="last_owner")
    leave = await client.delete(f"/v1/auth/members/{account.user_id}", headers=headers)
    assert_problem(leave, status=409, code="last_owner")


async def test_a_removed_member_loses_access_at_once_on_this_gateway(
    client: httpx.AsyncClient, account: Account
) -> None:
    member = await _join(client, account, "editor")
    assert (await forward_auth(client, member["access_token"], "/v1/planner/x")).status_code == 200
    headers = await identity_headers(client, account.access_token)
    removed = await client.delete(f"/v1/auth/members/{member['user_id']}", headers=headers)
    assert removed.status_code == 204
    # A fresh token (no cached decision) is refused; cached ones lapse within 45 s.
    login = await client.post(
        "/v1/auth/login", json={"email": "x@example.com", "password": PASSWORD}
    )
    assert login.status_code == 401
    assert member["user_id"] not in await _members(client, account.access_token)


async def test_a_role_change_reaches_the_identity(
    client: httpx.AsyncClient, account: Account
) -> None:
    member = await _join(client, account, "viewer")
    headers = await identity_headers(client, account.access_token)
    changed = await client.patch(
        f"/v1/auth/members/{member['user_id']}", json={"role": "editor"}, headers=headers
    )
    assert changed.json()["role"] == "editor"
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": member["refresh_token"]}
    )
    me = await client.get(
        "/v1/auth/me", headers=await identity_headers(client, refreshed.json()["access_token"])
    )
    assert me.json()["roles"] == ["editor"]


async def test_another_workspaces_member_is_not_found(
    client: httpx.AsyncClient, account: Account
) -> None:
    stranger = await sign_up(client)
    response = await client.delete(
        f"/v1/auth/members/{stranger.user_id}",
        headers=await identity_headers(client, account.access_token),
    )
    assert_problem(response, status=404, code="member_not_found")


async def _plan(settings: GatewaySettings, tenant_id: str, *, seats: int | None, at: float) -> None:
    """Billing's word on the plan, applied as the gateway worker does."""
    event = SubscriptionChanged(plan="starter", status="active", changed_at=at, seats=seats)
    database = Database(settings)
    apply: Callable[..., Awaitable[None]] = on_subscription_changed
    try:
        async with database.transaction() as session:
            await apply(session, new_event(event, source="billing", tenant_id=UUID(tenant_id)))
    finally:
        await database.dispose()


async def test_the_plans_seats_bound_members_and_open_invitations(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings
) -> None:
    await _plan(settings, account.tenant_id, seats=3, at=1.0)  # the owner holds one
    await _join(client, account, "editor")
    pending = (await _invite(client, account, unique_email("pending"))).json()

    refused = await _invite(client, account, unique_email("fourth"))

    body = assert_problem(refused, status=409, code="seats_exhausted")
    assert "3 seats" in body["detail"]
    # Revoking the open invitation frees its seat.
    headers = await identity_headers(client, account.access_token)
    revoked = await client.delete(f"/v1/auth/invitations/{pending['id']}", headers=headers)
    assert revoked.status_code == 204
    assert (await _invite(client, account, unique_email("fourth"))).status_code == 201


async def test_an_invitation_cannot_be_accepted_once_the_plan_shrank(
    client: httpx.AsyncClient, account: Account, settings: GatewaySettings
) -> None:
    invitation = (await _invite(client, account, unique_email("late"))).json()
    await _plan(settings, account.tenant_id, seats=1, at=2.0)

    accepted = await client.post(
        "/v1/auth/invitations/accept", json={"token": invitation["token"], "password": PASSWORD}
    )

    assert_problem(accepted, status=409, code="seats_exhausted")
    # Without a subscription in force there is no limit.
    await _plan(settings, account.tenant_id, seats=None, at=3.0)
    accepted = await client.post(
        "/v1/auth/invitations/accept", json={"token": invitation["token"], "password": PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
