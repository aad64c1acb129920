"""Per-IP limits count the real client, also behind proxies that are not on loopback.

The gateway believes ``X-Forwarded-For`` only from the proxies in ``BAI_TRUSTED_PROXIES``
and takes the right-most address that is not one of them: what the last trusted proxy
saw. A client's own ``X-Forwarded-For`` (left of that) and any header from a peer that is
not a trusted proxy are ignored, so nobody escapes a bucket, or pushes others into theirs,
by naming addresses.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from bai_platform.runtime import forwarded_allow_ips as uvicorn_forwarded_allow_ips
from bai_platform.settings import ServiceSettings
from bai_testing.plugin import app_client
from gateway.app import create_app
from gateway.service.ratelimit import Quota, RateLimitSettings
from gateway.settings import GatewaySettings

from .conftest import assert_problem, unique_email

TRAEFIK = "10.1.2.3"  # the proxy's address as the gateway sees it: not loopback
LOAD_BALANCER = "10.9.0.4"
WRONG_LOGIN = {"password": "not the password"}


@asynccontextmanager
async def gateway_behind(settings: GatewaySettings, trusted: list[str]) -> AsyncIterator[FastAPI]:
    """A gateway of its own: 2 auth attempts per client IP a minute, these proxies trusted."""
    tuned = settings.model_copy(
        update={
            "rate_limits": RateLimitSettings(ip_auth=Quota(limit=2)),
            "trusted_proxies": [ip_network(network) for network in trusted],
        }
    )
    app = create_app(tuned)
    async with app_client(app):  # runs the lifespan
        yield app


async def _logins(app: FastAPI, *, peer: str, forwarded_for: list[str]) -> list[int]:
    """One failed login per ``X-Forwarded-For`` value, all from the peer ``peer``."""
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        answers = [
            await client.post(
                "/v1/auth/login",
                json={"email": unique_email(), **WRONG_LOGIN},
                headers={"X-Forwarded-For": value},
            )
            for value in forwarded_for
        ]
    return [answer.status_code for answer in answers]


async def test_behind_a_trusted_proxy_each_client_has_a_bucket_of_its_own(
    settings: GatewaySettings,
) -> None:
    async with gateway_behind(settings, [f"{TRAEFIK}/32"]) as app:
        first = await _logins(app, peer=TRAEFIK, forwarded_for=["198.51.100.1"] * 3)
        second = await _logins(app, peer=TRAEFIK, forwarded_for=["198.51.100.2"] * 2)
    assert first == [401, 401, 429]
    assert second == [401, 401]  # not locked out by the first client's failures


async def test_a_client_cannot_leave_its_bucket_by_forging_forwarded_for(
    settings: GatewaySettings,
) -> None:
    # The proxy appends the address it saw; whatever the client wrote stays on the left.
    forged = [f"203.0.113.{n}, 198.51.100.7" for n in range(1, 4)]
    async with gateway_behind(settings, [f"{TRAEFIK}/32"]) as app:
        assert await _logins(app, peer=TRAEFIK, forwarded_for=forged) == [401, 401, 429]


async def test_a_chain_of_trusted_proxies_is_walked_from_the_right(
    settings: GatewaySettings,
) -> None:
    # A load balancer in front of Traefik: both trusted (one as a network), the client is
    # the right-most address that is neither.
    chain = ["198.51.100.8, 10.9.0.4"] * 3
    async with gateway_behind(settings, [TRAEFIK, "10.9.0.0/16"]) as app:
        assert await _logins(app, peer=TRAEFIK, forwarded_for=chain) == [401, 401, 429]
        other = await _logins(app, peer=TRAEFIK, forwarded_for=["198.51.100.9, 10.9.0.4"])
    assert other == [401]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: GatewaySettings,
) -> None:
    spoofed = [f"198.51.100.{n}" for n in range(1, 4)]
    async with gateway_behind(settings, [f"{TRAEFIK}/32"]) as app:
        assert await _logins(app, peer="203.0.113.50", forwarded_for=spoofed) == [401, 401, 429]
        # Nor is an untrusted peer put in the bucket of the client it names.
        assert await _logins(app, peer=TRAEFIK, forwarded_for=["198.51.100.1"]) == [401]


async def test_by_default_only_loopback_proxies_are_trusted(settings: GatewaySettings) -> None:
    default = GatewaySettings()
    assert [str(network) for network in default.trusted_proxies] == ["127.0.0.1/32", "::1/128"]
    async with gateway_behind(settings, ["127.0.0.1", "::1"]) as app:
        spoofed = [f"198.51.100.{n}" for n in range(1, 4)]
        assert await _logins(app, peer=TRAEFIK, forwarded_for=spoofed) == [401, 401, 429]


def test_trusted_proxies_are_read_from_a_comma_separated_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BAI_TRUSTED_PROXIES", " 10.0.0.0/8, 192.168.1.7 ,fd00::/8")
    parsed = GatewaySettings().trusted_proxies
    assert [str(network) for network in parsed] == ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]
    monkeypatch.setenv("BAI_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    assert [str(network) for network in GatewaySettings().trusted_proxies] == ["10.0.0.0/8"]
    monkeypatch.setenv("BAI_TRUSTED_PROXIES", "")
    assert GatewaySettings().trusted_proxies == []


@pytest.mark.parametrize("value", ["10.0.0.0/33", "traefik", "10.0.0.1/8"])
def test_a_trusted_proxy_that_is_no_address_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BAI_TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError):
        GatewaySettings()


async def test_a_denied_login_names_the_ip_quota(settings: GatewaySettings) -> None:
    async with gateway_behind(settings, [TRAEFIK]) as app:
        transport = httpx.ASGITransport(app=app, client=(TRAEFIK, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            headers = {"X-Forwarded-For": "198.51.100.77"}
            body = {"email": unique_email(), **WRONG_LOGIN}
            for _ in range(2):
                await client.post("/v1/auth/login", json=body, headers=headers)
            denied = await client.post("/v1/auth/login", json=body, headers=headers)
    assert_problem(denied, status=429, code="rate_limited")
    assert "retry-after" in denied.headers


def test_uvicorn_is_told_the_same_trusted_proxies() -> None:
    gateway = GatewaySettings(trusted_proxies=[ip_network("10.0.0.0/8")])
    assert uvicorn_forwarded_allow_ips(gateway) == ["10.0.0.0/8"]
    assert uvicorn_forwarded_allow_ips(GatewaySettings(trusted_proxies=[])) == []
    # Every service is behind the same proxies: loopback unless the setting says otherwise.
    assert uvicorn_forwarded_allow_ips(ServiceSettings()) == ["127.0.0.1/32", "::1/128"]
