"""Schemathesis hooks of the edge fuzz (the CLI loads this file through SCHEMATHESIS_HOOKS).

- ``problem_json_on_every_4xx``: a check. Every 4xx answer, whoever gave it (a service,
  the gateway's ForwardAuth, Traefik's shields), is ``application/problem+json`` with the
  members clients match on. schemathesis's own content-type check already holds declared
  answers to the document; this one also holds answers the document could not foresee.
- URLs stay on this machine: services call the URLs tenants give them (n8n workflows,
  engines, publishing targets, crawl targets), so every ``uri`` the fuzz sends names a
  closed port on the loopback. Saved, such a URL is refused or fails to connect; nothing
  leaves the machine, whatever a generated case manages to schedule.
"""

import json
from typing import Any

import schemathesis
from hypothesis import strategies as st

PROBLEM_JSON = "application/problem+json"
PROBLEM_MEMBERS = ("type", "title", "status", "code")
DEAD_END = "http://127.0.0.1:9"  # the discard port: nothing listens there
PATHS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=12)


def problem_failure(status: int, content_type: str, body: bytes) -> str | None:
    """Why an answer of ``status`` is not a problem, or None when it is one."""
    if content_type.split(";")[0].strip() != PROBLEM_JSON:
        return f"{status} answered {content_type or 'without a Content-Type'}, not {PROBLEM_JSON}"
    try:
        problem = json.loads(body)
    except ValueError:
        return f"{status} answered a problem that is not JSON: {body[:200]!r}"
    missing = [m for m in PROBLEM_MEMBERS if not isinstance(problem, dict) or m not in problem]
    if missing:
        return f"{status} answered a problem without {', '.join(missing)}"
    if problem["status"] != status:
        return f"{status} answered a problem whose status is {problem['status']}"
    return None


@schemathesis.check
def problem_json_on_every_4xx(
    ctx: schemathesis.CheckContext,
    response: schemathesis.Response,
    case: schemathesis.Case[Any],  # any operation: the check reads the response alone
) -> bool | None:
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    failure = problem_failure(response.status_code, content_type, response.content)
    if failure:
        raise AssertionError(failure)
    return None


schemathesis.openapi.format("uri", PATHS.map(lambda path: f"{DEAD_END}/{path}"))
