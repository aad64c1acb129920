"""The live event stream, fuzzed: schemathesis makes the cases, a client that never waits for
the end sends them (test_fuzz_the_api_at_the_edge).

``GET /v1/events`` never ends, so the CLI run leaves it out. Here schemathesis generates its
cases (the ``Last-Event-ID`` header, valid, invalid and real ids, and headers nobody
declared) beside an ``Authorization`` drawn from real and broken credentials. Each case is
sent as ``case.as_transport_kwargs()`` says, and the client reads the status, the headers
and the first bytes only: a problem's body whole (it ends), a stream's first chunk (the
retry hint), or its first event when a Last-Event-ID was sent (the missed events or a
``reset`` come at once). Then it closes the connection, and schemathesis's own checks judge
what it read against the document, as they judge every other operation.
"""

import string
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from .fuzz_hooks import problem_json_on_every_4xx

PATH = "/v1/events"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_json_on_every_4xx,
]
PROBLEM_BYTES = 64 * 1024  # a problem is a few hundred bytes; a longer one is cut, and fails
TIMEOUT = (5.0, 10.0)  # connect, and each read: the first bytes come at once or not at all
TOKEN_CHARACTERS = string.ascii_letters + string.digits + "-._~+/="


@dataclass(frozen=True)
class Credentials:
    """``Authorization`` values by kind (None: no header). The first kind (the workspace's
    own, which gets streams) is drawn about half the time, the others and junk the rest."""

    by_kind: Mapping[str, str | None]

    def strategy(self) -> st.SearchStrategy[tuple[str, str | None]]:
        first, *others = self.by_kind
        kinds = [first] * (len(others) + 1) + [*others, "junk"]
        return st.sampled_from(kinds).flatmap(self._drawn)

    def _drawn(self, kind: str) -> st.SearchStrategy[tuple[str, str | None]]:
        if kind in self.by_kind:
            return st.just((kind, self.by_kind[kind]))
        junk = st.text(alphabet=TOKEN_CHARACTERS, max_size=80)
        return junk.map(lambda token: (kind, f"Bearer {token}"))


@dataclass
class Tally:
    """What the edge answered, by credential kind and status."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)

    def total(self) -> int:
        return sum(self.answers.values())

    def statuses(self) -> set[int]:
        return {status for _, status in self.answers}

    def table(self) -> str:
        rows = [
            f"{kind:<18} {status:>6} {n:>6}" for (kind, status), n in sorted(self.answers.items())
        ]
        return "\n".join([f"{'credential':<18} {'status':>6} {'cases':>6}", *rows])


def cases(
    operation: schemathesis.APIOperation[Any, Any, Any, Any], event_ids: list[str]
) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Valid cases of the operation, cases resuming from real event ids, invalid cases."""
    resuming = st.sampled_from(event_ids).flatmap(
        lambda event_id: operation.as_strategy(headers={"last-event-id": event_id})
    )
    valid = operation.as_strategy(GenerationMode.POSITIVE)
    invalid = operation.as_strategy(GenerationMode.NEGATIVE)
    # Drawn 2:2:1 (hypothesis's one_of leans to the branches that shrink best).
    return st.sampled_from([valid, valid, resuming, resuming, invalid]).flatmap(lambda cases: cases)


def fuzz(
    operation: schemathesis.APIOperation[Any, Any, Any, Any],
    *,
    edge_url: str,
    credentials: Credentials,
    event_ids: list[str],
    examples: int,
    seed_value: int,
) -> Tally:
    """Send ``examples`` generated cases; raises schemathesis's report on the first failure."""
    tally = Tally()

    @seed(seed_value)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case=cases(operation, event_ids), credential=credentials.strategy())
    def one(case: schemathesis.Case[Any], credential: tuple[str, str | None]) -> None:
        kind, authorization = credential
        headers = {"Authorization": authorization} if authorization else {}
        response = send(case.as_transport_kwargs(base_url=edge_url, headers=headers))
        tally.answers[(kind, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    one()
    return tally


def send(kwargs: dict[str, Any]) -> schemathesis.Response:
    """The answer to one case: status, headers and first bytes, then the connection closed."""
    started = time.monotonic()
    with requests.request(**kwargs, stream=True, timeout=TIMEOUT) as answer:
        if answer.ok:
            content = _first_bytes(answer, until_an_event=_resumes(kwargs["headers"]))
        else:
            content = answer.raw.read(PROBLEM_BYTES, decode_content=True)
        return schemathesis.Response(
            status_code=answer.status_code,
            headers={name: answer.raw.headers.getlist(name) for name in answer.raw.headers},
            content=content,
            request=answer.request,
            elapsed=time.monotonic() - started,
            verify=True,
            message=answer.reason,
            encoding=answer.encoding,
            stream_cut_short=answer.ok,
        )


def _resumes(headers: Mapping[str, str]) -> bool:
    """Whether the request names an event to resume after (HTTP trims a value's blanks)."""
    sent = next((v for k, v in headers.items() if k.lower() == "last-event-id"), "")
    return bool(sent.strip(" \t"))


def _first_bytes(answer: requests.Response, *, until_an_event: bool) -> bytes:
    """The stream's first chunk; with ``until_an_event``, up to its first complete event."""
    content = b""
    for chunk in _chunks(answer):
        content += chunk
        if not until_an_event or _has_event(content):
            return content
    raise AssertionError(f"the stream ended after {content!r} without an event")


def _chunks(answer: requests.Response) -> Iterator[bytes]:
    # read1 returns what has arrived (iter_content would wait to fill a chunk).
    while chunk := answer.raw.read1(PROBLEM_BYTES, decode_content=True):
        yield chunk


def _has_event(content: bytes) -> bool:
    blocks = content.replace(b"\r\n", b"\n").split(b"\n\n")[:-1]  # the last is not complete
    return any(line.startswith(b"data:") for block in blocks for line in block.split(b"\n"))
