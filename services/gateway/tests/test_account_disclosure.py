"""What the public auth routes tell a stranger about who has an account.

Signup answers 409 ``email_taken`` for an address that has an account: signup signs the
new owner in at once and there is no email verification, so there is no channel to tell
the real owner instead, and a signup that claimed success would have to hand out tokens.
What bounds the probing is the per-IP ``ip-auth`` quota, one bucket shared by signup,
login, refresh, logout and invitation acceptance; login itself never tells an unknown
email from a wrong password.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from bai_testing.plugin import app_client
from gateway.app import create_app
from gateway.service.ratelimit import Quota, RateLimitSettings
from gateway.settings import GatewaySettings

from .conftest import PASSWORD, assert_problem, sign_up, unique_email, unique_workspace

# Headers that differ between any two answers, whatever they say.
PER_ANSWER = {"date", "content-length", "x-request-id", "ratelimit", "traceparent"}


@asynccontextmanager
async def gateway_with_ip_quota(
    settings: GatewaySettings, limit: int
) -> AsyncIterator[httpx.AsyncClient]:
    tuned = settings.model_copy(
        update={"rate_limits": RateLimitSettings(ip_auth=Quota(limit=limit))}
    )
    async with app_client(create_app(tuned)) as client:
        yield client


async def test_signup_probes_and_login_guesses_draw_on_one_per_ip_quota(
    settings: GatewaySettings,
) -> None:
    async with gateway_with_ip_quota(settings, limit=5) as client:
        taken = (await sign_up(client)).email  # the first of five
        probe = {"email": taken, "password": PASSWORD, "workspace": unique_workspace()}
        answers = [
            await client.post("/v1/auth/signup", json=probe),
            await client.post("/v1/auth/login", json={"email": taken, "password": "guess one"}),
            await client.post("/v1/auth/refresh", json={"refresh_token": "rt_" + "x" * 43}),
            await client.post("/v1/auth/logout", json={"refresh_token": "rt_" + "y" * 43}),
            await client.post("/v1/auth/signup", json=probe),
        ]
    assert [answer.status_code for answer in answers] == [409, 401, 401, 204, 429]
    assert_problem(answers[0], status=409, code="email_taken")
    assert answers[0].headers["ratelimit-policy"] == '"ip-auth";q=5;w=60'
    assert_problem(answers[4], status=429, code="rate_limited")
    assert "retry-after" in answers[4].headers


async def test_login_answers_alike_for_an_unknown_email_and_a_wrong_password(
    settings: GatewaySettings,
) -> None:
    async with gateway_with_ip_quota(settings, limit=100) as client:
        known = (await sign_up(client)).email
        wrong_password = await client.post(
            "/v1/auth/login", json={"email": known, "password": "not the password"}
        )
        unknown_email = await client.post(
            "/v1/auth/login", json={"email": unique_email(), "password": "not the password"}
        )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert set(wrong_password.headers) - PER_ANSWER == set(unknown_email.headers) - PER_ANSWER
    for answer in (wrong_password, unknown_email):
        assert {name: answer.headers[name] for name in ("content-type", "ratelimit-policy")} == {
            "content-type": "application/problem+json",
            "ratelimit-policy": '"ip-auth";q=100;w=60',
        }
