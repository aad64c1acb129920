"""The access rule, case by case: what the gateway and every service let through."""

from typing import Any

import pytest

from bai_platform.access import (
    InsufficientScope,
    NoWorkspaceRole,
    UnknownCredential,
    VisitorNotAllowedHere,
    audience_for,
    check,
)
from bai_platform.errors import Forbidden
from bai_platform.settings import ServiceSettings

CHAT = "/v1/creator/chat/3f1c/messages"
VISITOR = {"credential": "visitor", "roles": ["visitor"], "scopes": ["chat"]}
OWNER = {"credential": "user", "roles": ["owner"], "scopes": ["api"]}


def _key(*scopes: str, role: str = "editor") -> dict[str, Any]:
    return {"credential": "api_key", "roles": [role], "scopes": list(scopes)}


@pytest.mark.parametrize(
    ("who", "method", "path"),
    [
        pytest.param(OWNER, "POST", "/v1/planner/campaigns", id="an owner writes"),
        pytest.param(OWNER, "GET", "/v1/auth/members", id="a person on the gateway's routes"),
        pytest.param(VISITOR, "POST", CHAT, id="a visitor posts in the chat"),
        pytest.param(VISITOR, "HEAD", CHAT, id="a visitor reads the chat"),
        pytest.param(_key("planner:read"), "OPTIONS", "/v1/planner/campaigns", id="key reads"),
        pytest.param(_key("mining:write"), "DELETE", "/v1/mining/workflow", id="key writes"),
    ],
)
def test_the_rule_lets_through(who: dict[str, Any], method: str, path: str) -> None:
    check(method=method, path=path, **who)


@pytest.mark.parametrize(
    ("who", "method", "path", "error"),
    [
        pytest.param(VISITOR, "GET", "/v1/planner/campaigns", VisitorNotAllowedHere, id="visitor"),
        pytest.param(VISITOR, "PUT", CHAT, VisitorNotAllowedHere, id="visitor puts in the chat"),
        pytest.param(
            VISITOR, "GET", "/v1/creator/chat/../engine", VisitorNotAllowedHere, id="dot segment"
        ),
        pytest.param(
            VISITOR, "GET", "/v1/creator/chat/%2e%2e/engine", VisitorNotAllowedHere, id="encoded"
        ),
        pytest.param(
            {**OWNER, "roles": ["visitor"]}, "GET", CHAT, VisitorNotAllowedHere, id="half visitor"
        ),
        pytest.param(
            _key("planner:read"), "POST", "/v1/planner/campaigns", InsufficientScope, id="read key"
        ),
        pytest.param(_key("api"), "GET", "/v1/auth/api-keys", InsufficientScope, id="key as api"),
        pytest.param(
            _key("planner:read"), "GET", "/v1/mining/jobs", InsufficientScope, id="other service"
        ),
        pytest.param(
            {**OWNER, "credential": "robot"}, "GET", "/v1/planner/posts", UnknownCredential, id="?"
        ),
        pytest.param({**OWNER, "roles": []}, "GET", "/v1/planner/posts", NoWorkspaceRole, id="-"),
        pytest.param(
            {**OWNER, "roles": ["viewer"]}, "PATCH", "/v1/planner/posts/1", Forbidden, id="viewer"
        ),
    ],
)
def test_the_rule_refuses(
    who: dict[str, Any], method: str, path: str, error: type[Forbidden]
) -> None:
    with pytest.raises(error):
        check(method=method, path=path, **who)


@pytest.mark.parametrize(
    ("path", "audience"),
    [
        ("/v1/planner/campaigns", "bai-planner"),
        ("/v1/billing/balance", "bai-billing"),
        ("/v1/auth/me", "bai-gateway"),
        ("/v1/plannerx/campaigns", "bai-gateway"),
    ],
)
def test_each_path_has_the_audience_of_its_service(path: str, audience: str) -> None:
    assert audience_for(path) == audience


def test_a_service_accepts_its_own_audience_unless_told_otherwise() -> None:
    assert ServiceSettings(service_name="mining").identity_audience == "bai-mining"
    assert ServiceSettings(service_name="mining", identity_audience="x").identity_audience == "x"
