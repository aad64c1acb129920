"""Request dependencies of the gateway."""

from typing import Annotated

from fastapi import Depends, Request, Response

from bai_platform.app_state import held
from gateway.errors import enforce
from gateway.service.accounts import AuthContext
from gateway.service.forward_auth import ForwardAuth
from gateway.service.ratelimit import Policy, client_ip_key, rate_limit_headers
from gateway.state import GatewayState


# async on purpose, though they await nothing: FastAPI runs a plain ``def`` dependency in its
# thread pool, and that hand-off on every request (ForwardAuth included) cost the gateway a
# good share of its CPU under load (bench/load_users.py, py-spy).
async def _auth_context(request: Request) -> AuthContext:
    return held(request, GatewayState).auth


async def _forward_auth(request: Request) -> ForwardAuth:
    return held(request, GatewayState).forward_auth


async def _limit_by_ip(request: Request, response: Response) -> None:
    """Per-IP quota of the unauthenticated auth routes (login, signup, refresh...)."""
    limits = held(request, GatewayState).settings.rate_limits
    await _count_ip(request, response, limits.ip_auth_policy)


async def _limit_public_by_ip(request: Request, response: Response) -> None:
    """Per-IP quota of the other public routes (the website chat's visitor tokens)."""
    limits = held(request, GatewayState).settings.rate_limits
    await _count_ip(request, response, limits.ip_public_policy)


def client_key(request: Request) -> str:
    """The rate-limit key of the caller's address (as the trusted proxies report it)."""
    address = request.client.host if request.client else "unknown"
    try:
        return f"ip:{client_ip_key(address)}"
    except ValueError:  # not an IP (an in-process test client): count it as given
        return f"ip:{address}"


async def _count_ip(request: Request, response: Response, policy: Policy) -> None:
    limiter = held(request, GatewayState).rate_limiter
    decision = await limiter.hit(policy, client_key(request))
    # Kept on the request too, so that a 401 or 422 of the route still carries them.
    request.state.rate_limit_headers = rate_limit_headers(decision)
    response.headers.update(enforce(decision))


Auth = Annotated[AuthContext, Depends(_auth_context)]
Decider = Annotated[ForwardAuth, Depends(_forward_auth)]
# For the routes anyone may call: the client's IP is what can be counted.
LIMIT_BY_IP = Depends(_limit_by_ip)
# The same per IP with the (looser) public quota: many visitors of a site share an address.
LIMIT_PUBLIC_BY_IP = Depends(_limit_public_by_ip)
