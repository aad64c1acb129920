"""Schemathesis hooks of the edge fuzz (the CLI loads this file through SCHEMATHESIS_HOOKS).

- ``problem_json_on_every_4xx``: a check. Every 4xx answer, whoever gave it (a service,
  the gateway's ForwardAuth, Traefik's shields), is ``application/problem+json`` with the
  members clients match on. schemathesis's own content-type check already holds declared
  answers to the document; this one also holds answers the document could not foresee.
- URLs stay on this machine: services call the URLs tenants give them (n8n workflows,
  engines, publishing targets, crawl targets), so every ``uri`` the fuzz sends names a
  closed port on the loopback. Saved, such a URL is refused or fails to connect; nothing
  leaves the machine, whatever a generated case manages to schedule.
- New brands and schedules get names of their own in the stateful phase: a workspace's names
  are unique (409), and hypothesis draws the same few names again and again, so most walks
  would end at their first step.
- The formats the document names beyond JSON Schema's (``time-zone``, ``cron``) are
  generated as such: a brand, a schedule, a campaign's first step is then made often enough
  for the stateful phase to walk on from it (a random string is never a time zone).
- The files the document declares (CSV, iCalendar, JSON lines) are read as what they are,
  so that ``response_schema_conformance`` holds them to the document too: UTF-8 text, and
  JSON lines of JSON objects (schemathesis skips a media type it cannot read).
"""

import itertools
import json
from typing import Any
from zoneinfo import available_timezones

import schemathesis
from hypothesis import strategies as st

PROBLEM_JSON = "application/problem+json"
PROBLEM_MEMBERS = ("type", "title", "status", "code")
NAMED = {("POST", "/v1/planner/brands"), ("POST", "/v1/mining/schedules")}
NAME_NUMBERS = itertools.count(1)
DEAD_END = "http://127.0.0.1:9"  # the discard port: nothing listens there
PATHS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=12)
ZONES = st.sampled_from(sorted(available_timezones() - {"localtime"}))


def _cron_field(low: int, high: int) -> st.SearchStrategy[str]:
    return st.sampled_from(["*", f"*/{high - low}"]) | st.integers(low, high).map(str)


# minute, hour, day of the month, month, day of the week
CRONS = st.tuples(
    _cron_field(0, 59),
    _cron_field(0, 23),
    _cron_field(1, 28),
    _cron_field(1, 12),
    _cron_field(0, 6),
).map(" ".join)


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


@schemathesis.hook
def before_call(
    ctx: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    body = case.body if isinstance(case.body, dict) else {}
    name = body.get("name")
    if _walking(case) and (case.method, case.path) in NAMED and isinstance(name, str):
        body["name"] = f"{name[:180]} {next(NAME_NUMBERS)}"


@schemathesis.deserializer("text/csv", "text/calendar")
def utf8_text(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> str:
    return response.content.decode("utf-8")


@schemathesis.deserializer("application/x-ndjson")
def json_lines(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> str:
    """The text, once every line is a JSON object (the document can only say "a string")."""
    text = response.content.decode("utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not isinstance(json.loads(line), dict):
            raise ValueError(f"line {number} is not a JSON object: {line[:200]!r}")
    return text


def _walking(case: schemathesis.Case[Any]) -> bool:
    return case.meta is not None and case.meta.phase.name.value == "stateful"


schemathesis.openapi.format("uri", PATHS.map(lambda path: f"{DEAD_END}/{path}"))
schemathesis.openapi.format("time-zone", ZONES)
schemathesis.openapi.format("cron", CRONS)
