"""schemathesis against the edge's one API document, through Traefik, with a real token.

Every operation of ``/v1/openapi.json`` but the live event stream goes through
schemathesis's four phases: the document's examples,
coverage (boundaries, missing and wrong-typed members), fuzzing, and stateful sequences
along the document's links and those schemathesis infers (a created brand's id into a new
campaign and into the brand's routes, ...). Expected:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``, ``content_type_conformance``,
  ``response_schema_conformance``: every answer is one the document declares, in the
  declared media type and shape, so a client generated from it knows every answer;
- ``problem_json_on_every_4xx`` (fuzz_hooks): every 4xx is problem+json, declared or not.

The stack is the test's own: thousands of random writes stay out of the session's stack,
the workspace's limits are lifted so that the run tests the API rather than the limiter
(Traefik's shields stay as they are, and the run keeps under the flood shield's rate),
and billing speaks to the Stripe stand-in, as an installation that sells plans does (one
without Stripe answers checkout with 503 ``billing_not_configured``, by design). Every
URL the run sends names a closed loopback port (fuzz_hooks): nothing leaves the machine.

The live event stream never ends, so the CLI leaves it out; the second test fuzzes it with
cases schemathesis makes, sent by a client that reads only the first bytes (fuzz_live_events),
with credentials real and broken, under the same checks.

Bounded and repeatable: ``BAI_FUZZ_EXAMPLES`` cases per operation in the fuzzing phase
and up to twenty times as many stateful scenarios of up to ten steps (a few in ``make
test``, more in ``make fuzz``), the coverage phase's fixed set, one fixed seed and no
example database, so a commit sends the same cases every run. On failure the message is
schemathesis's report, with a curl line for each failing case. The run also prints its
walks along the document's links (fuzz_walks): how many steps took an id through one, what
they reached, the longest walk.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import schemathesis

from bai_platform.devstack import Stack, StackSettings
from bai_platform.devstack.config import reachable_state_dir
from bai_testing.stripe_api import TEST_API_KEY, stripe_server

from .conftest import Account, new_brand, sign_up
from .fuzz_live_events import PATH as LIVE_EVENTS
from .fuzz_live_events import Credentials, fuzz
from .fuzz_walks import Walks
from .test_chat_at_the_edge import ORIGIN, WIDGET
from .test_live_events import listening

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOOKS = Path(__file__).with_name("fuzz_hooks.py")
EXAMPLES = int(os.environ.get("BAI_FUZZ_EXAMPLES", "5"))
SEED = 14  # the issue that asked for this run
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "problem_json_on_every_4xx",
)
LIMITS = {
    "ip_auth": {"limit": 1_000_000},
    "credential": {"limit": 1_000_000},
    "tenant_plans": {"starter": {"limit": 1_000_000}},
}
# Under the flood shield's 300 a second per client (bai_platform.edge): a client that
# stays under it never meets Traefik's bare 429.
REQUESTS_PER_SECOND = 250
# Few live connections per workspace: a stream the gateway kept after its client left would
# soon refuse the workspace's next one (test_the_live_stream_...).
LIVE_CONNECTIONS = 8
MAX_STEPS = 10


def _service_env(stripe_url: str) -> dict[str, str]:
    return {
        "BAI_RATE_LIMITS": json.dumps(LIMITS),
        "BAI_STRIPE_API_KEY": TEST_API_KEY,
        "BAI_STRIPE_API_BASE": stripe_url,
        # The run's URLs are loopback dead ends (fuzz_hooks): saved, and then unreachable.
        "BAI_ALLOW_PRIVATE_DESTINATIONS": "true",
        "BAI_LIVE_MAX_CONNECTIONS_PER_TENANT": str(LIVE_CONNECTIONS),
    }


@pytest.fixture(scope="module")
async def fuzz_edge() -> AsyncIterator[str]:
    """The edge of the module's own stack."""
    async with stripe_server() as stripe, _fuzz_stack(stripe.url) as stack:
        yield stack.edge_url


@asynccontextmanager
async def _fuzz_stack(stripe_url: str) -> AsyncIterator[Stack]:
    with reachable_state_dir() as state:
        settings = StackSettings(
            state_dir=state, free_ports=True, service_env=_service_env(stripe_url)
        )
        stack = Stack(settings)
        try:
            await asyncio.to_thread(stack.start)
            yield stack
        finally:
            await asyncio.to_thread(stack.stop)


async def _token(edge_url: str) -> str:
    """A new workspace's owner's access token (a real sign-up through the edge)."""
    async with httpx.AsyncClient(base_url=edge_url, timeout=10.0) as edge:
        return (await sign_up(edge, workspace="Fuzz Coffee")).token


def _config(workdir: Path) -> Path:
    """What the CLI has no flag for: the stateful phase's own number of scenarios (each a
    walk along the links, so it needs more of them than an operation needs cases), and
    walks long enough to reach a post from a new brand (brand, campaign, month, posts, a
    post, its edit, its moves)."""
    path = workdir / "schemathesis.toml"
    path.write_text(
        f"[phases.stateful]\nmax-steps = {MAX_STEPS}\n"
        f"[phases.stateful.generation]\nmax-examples = {20 * EXAMPLES}\n"
    )
    return path


def _command(edge_url: str, token: str, config: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
        *("--config-file", str(config), "run"),
        f"{edge_url}/v1/openapi.json",
        *("--url", edge_url),
        *("--header", f"Authorization: Bearer {token}"),
        *("--checks", ",".join(CHECKS)),
        *("--max-examples", str(EXAMPLES)),
        *("--seed", str(SEED), "--generation-database", "none"),
        *("--exclude-path", "/v1/events"),
        # One worker: on two cores the stack needs the CPU more than the client does (four
        # were slower), and hypothesis parses lambdas' sources with ast.parse, which
        # CPython 3.11 does not make thread-safe (gh-106905; it failed one run of four).
        *("--workers", "1"),
        *("--rate-limit", f"{REQUESTS_PER_SECOND}/s"),
        *("--request-timeout", "15"),
        # Every event of the run, for the walks along links (fuzz_walks).
        *("--report", "ndjson", "--report-dir", str(config.parent)),
    ]


async def _schemathesis(edge_url: str, token: str, workdir: Path) -> tuple[int, str]:
    """Run the CLI (its replay store goes into ``workdir``); its exit code and report."""
    process = await asyncio.create_subprocess_exec(
        *_command(edge_url, token, _config(workdir)),
        cwd=workdir,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await process.communicate()
    finally:  # a test stopped meanwhile (a timeout) leaves no run hammering the stack
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None  # communicate() returns once the run has ended
    return process.returncode, output.decode(errors="replace")


async def test_every_answer_at_the_edge_is_declared_and_no_input_makes_a_server_error(
    fuzz_edge: str, tmp_path: Path
) -> None:
    token = await _token(fuzz_edge)
    exit_code, report = await _schemathesis(fuzz_edge, token, tmp_path)
    assert exit_code == 0, report
    print(report)  # `make fuzz` shows schemathesis's summary (pytest -s)
    walks = Walks.read(tmp_path)
    print(walks.table())
    assert walks.steps > 0, "the stateful phase followed none of the document's links"
    assert walks.deepest >= 2, "no walk went on from an answer reached through a link"


async def _credentials(edge: httpx.AsyncClient, owner: Account) -> Credentials:
    """Real credentials of every kind, and broken ones."""
    key = await edge.post(
        "/v1/auth/api-keys",
        json={"name": "Live", "scopes": ["planner:read"]},
        headers=owner.headers,
    )
    widget = await edge.post("/v1/creator/widgets", json=WIDGET, headers=owner.headers)
    visitor = await edge.post(
        "/v1/chat/visitor-token",
        json={"widget_key": widget.json()["public_key"]},
        headers={"Origin": ORIGIN},
    )
    stranger = await sign_up(edge, workspace="Fuzz Elsewhere")
    assert (key.status_code, visitor.status_code) == (201, 201), (key.text, visitor.text)
    body, signature = owner.token.rsplit(".", 1)
    return Credentials(
        {
            "owner": f"Bearer {owner.token}",
            "api key": f"Bearer {key.json()['key']}",
            "visitor": f"Bearer {visitor.json()['token']}",
            "other workspace": f"Bearer {stranger.token}",
            "forged": f"Bearer {body}.{signature[::-1]}",
            "basic": "Basic b3duZXI6cGFzc3dvcmQ=",
            "none": None,
        }
    )


async def _event_ids(edge: httpx.AsyncClient, owner: Account) -> list[str]:
    """Ids of the owner's workspace's events, each with later events to resume to."""
    async with listening(edge, owner) as listener:
        brand_id = await new_brand(edge, owner, name="Live")
        for name in ("First", "Second"):
            created = await edge.post(
                "/v1/planner/campaigns",
                json={"brand_id": brand_id, "name": name},
                headers=owner.headers,
            )
            assert created.status_code == 201, created.text
        await listener.wait_for(lambda _: len(listener.events) >= 2)
    return [event["id"] for event in listener.events[:-1]]


async def _served(edge: httpx.AsyncClient, owner: Account) -> bool:
    """Whether the workspace gets a live stream again within a few seconds."""
    for _ in range(20):
        async with edge.stream("GET", LIVE_EVENTS, headers=owner.headers) as answer:
            if answer.status_code == 200:
                return True
        await asyncio.sleep(0.25)
    return False


async def test_the_live_stream_answers_every_case_as_declared_and_keeps_no_closed_stream(
    fuzz_edge: str,
) -> None:
    async with httpx.AsyncClient(base_url=fuzz_edge, timeout=10.0) as edge:
        owner = await sign_up(edge, workspace="Fuzz Live")
        credentials, event_ids = await _credentials(edge, owner), await _event_ids(edge, owner)
        schema = await asyncio.to_thread(
            schemathesis.openapi.from_url, f"{fuzz_edge}/v1/openapi.json"
        )
        started = time.monotonic()
        tally = await asyncio.to_thread(
            fuzz,
            schema[LIVE_EVENTS]["GET"],
            edge_url=fuzz_edge,
            credentials=credentials,
            event_ids=event_ids,
            examples=20 * EXAMPLES,
            seed_value=SEED,
        )
        print(f"\n{LIVE_EVENTS}: {tally.total()} cases in {time.monotonic() - started:.1f} s")
        print(tally.table())
        assert {200, 401, 403} <= tally.statuses()  # served, and refused both ways
        # Every case closed its stream: the workspace's few connections are free again.
        assert await _served(edge, owner)
