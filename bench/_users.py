"""The locust users of ``bench.load_users``: people working in their workspaces.

``load_users`` runs this file with ``locust --headless`` once per level. It reads the
seeded workspaces from the JSON file named by ``BAI_BENCH_SEED`` and writes what it
measured to ``BAI_BENCH_OUT``. Who does what (weights are shares of the users):

| user            | weight | what it does, then waits                                  |
|-----------------|--------|-----------------------------------------------------------|
| CalendarBrowser | 45     | campaigns, a month, a month's posts, one post: 3-10 s      |
| Editor          | 10     | opens its post (a draft again), edits, approves: 3-10 s    |
| ChatVisitor     | 20     | a visitor token and conversation once, a message: 5-15 s   |
| MiningUser      | 5      | a job on the bench's local site, polled each second: 10-30 s |
| LiveWatcher     | 20     | holds ``GET /v1/events`` 20-40 s, again after 1-3 s        |

Every user is a person of one workspace (the users are dealt round-robin over the
workspaces) with an access token of its own, and comes from an address of its own
(``X-Forwarded-For``: the bench's edge trusts the loopback proxy, so Traefik's and the
gateway's per-client limits count each user apart, as behind a load balancer).

Each request is sorted by its answer: ``ok`` (the status the step expects), ``limited``
(429: a deliberate refusal, counted apart) or ``error`` (anything else, a timeout or a
dropped connection). Only requests that start after every user has been spawned and the
warm-up has passed are counted.
"""

import itertools
import json
import os
import random
import socket
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

NETWORK_TIMEOUT = 30.0
SEE_HEADERS = b"\r\n\r\n"


@dataclass
class Recorder:
    """Latencies of the expected answers, 429s and errors, per endpoint name."""

    warmup: float = 0.0
    start: float | None = None
    end: float | None = None
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    limited: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def counts(self, started: float) -> bool:
        return self.start is not None and self.end is None and started >= self.start

    def record(self, name: str, started: float, millis: float, outcome: str) -> None:
        if not self.counts(started):
            return
        if outcome == "ok":
            self.latencies[name].append(millis)
        elif outcome == "429":
            self.limited[name] += 1
        else:
            self.errors[f"{name} -> {outcome}"] += 1

    def dump(self) -> dict[str, Any]:
        return {
            "seconds": (self.end or time.time()) - (self.start or time.time()),
            "latencies": self.latencies,
            "limited": self.limited,
            "errors": self.errors,
        }


@dataclass
class Seed:
    """What ``load_users`` prepared: workspaces, their posts and widgets, tokens per user."""

    month: str
    origin: str
    site_url: str
    workspaces: list[dict[str, Any]]
    drafts: list[deque[str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: str) -> "Seed":
        with open(path, encoding="utf-8") as file:
            raw = json.load(file)
        seed = cls(raw["month"], raw["origin"], raw["site_url"], raw["workspaces"])
        seed.drafts = [deque(w["posts"]) for w in seed.workspaces]
        return seed


RECORDER = Recorder()
SEED: Seed | None = None
NUMBERS = itertools.count()


def seed() -> Seed:
    assert SEED is not None, "BAI_BENCH_SEED was not read"
    return SEED


@events.init.add_listener
def _read_seed(environment: Environment, **kwargs: Any) -> None:
    global SEED
    SEED = Seed.read(os.environ["BAI_BENCH_SEED"])
    RECORDER.warmup = float(os.environ.get("BAI_BENCH_WARMUP", "0"))


@events.spawning_complete.add_listener
def _start_measuring(user_count: int, **kwargs: Any) -> None:
    RECORDER.start = time.time() + RECORDER.warmup


@events.test_stopping.add_listener
def _stop_measuring(**kwargs: Any) -> None:
    RECORDER.end = time.time()


@events.quitting.add_listener
def _write_results(**kwargs: Any) -> None:
    with open(os.environ["BAI_BENCH_OUT"], "w", encoding="utf-8") as file:
        json.dump(RECORDER.dump(), file)


@events.request.add_listener
def _sort(
    name: str,
    start_time: float,
    response_time: float,
    response: Any = None,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    status = getattr(response, "status_code", 0) or 0
    expected = (context or {}).get("expect", 200)
    if status == expected:
        outcome = "ok"
    elif status:
        outcome = str(status)
    else:
        outcome = type(exception).__name__ if exception else "no answer"
    RECORDER.record(name, start_time, response_time, outcome)


class Person(FastHttpUser):
    """A member of one workspace, with a token and an address of their own."""

    abstract = True
    network_timeout = NETWORK_TIMEOUT
    connection_timeout = NETWORK_TIMEOUT

    def on_start(self) -> None:
        number = next(NUMBERS)
        workspaces = seed().workspaces
        self.workspace_index = number % len(workspaces)
        self.workspace = workspaces[self.workspace_index]
        tokens: list[str] = self.workspace["tokens"]
        self.token = tokens[(number // len(workspaces)) % len(tokens)]
        self.address = f"127.{1 + number // 65536}.{number // 256 % 256}.{number % 256}"

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Forwarded-For": self.address,
            **extra,
        }

    def call(self, method: str, path: str, name: str, *, expect: int = 200, **kwargs: Any) -> Any:
        """One request; its JSON when it got the expected answer, else None."""
        kwargs.setdefault("headers", self.headers())
        response = self.client.request(
            method, path, name=name, context={"expect": expect}, **kwargs
        )
        return response.json() if response.status_code == expect else None


class CalendarBrowser(Person):
    weight = 45
    wait_time = between(3, 10)

    @task(3)
    def campaigns(self) -> None:
        self.call("GET", "/v1/planner/campaigns", "GET /v1/planner/campaigns")

    @task(3)
    def month_of_a_campaign(self) -> None:
        campaign = random.choice(self.workspace["campaigns"])
        path = f"/v1/planner/campaigns/{campaign}/posts?month={seed().month}"
        self.call("GET", path, "GET /v1/planner/campaigns/{id}/posts")

    @task(2)
    def posts_of_the_month(self) -> None:
        start, end = self.workspace["range"]
        path = f"/v1/planner/posts?from={start}&to={end}&limit=100"
        self.call("GET", path, "GET /v1/planner/posts")

    @task(2)
    def one_post(self) -> None:
        post = random.choice(self.workspace["posts"])
        self.call("GET", f"/v1/planner/posts/{post}", "GET /v1/planner/posts/{id}")


class Editor(Person):
    """Edits and approves drafts that no other editor holds (so no race makes a 409)."""

    weight = 10
    wait_time = between(3, 10)

    def on_start(self) -> None:
        super().on_start()
        drafts = seed().drafts[self.workspace_index]
        self.mine = [drafts.popleft() for _ in range(min(3, len(drafts)))]

    @task
    def edit_and_approve(self) -> None:
        if not self.mine:
            return
        post = random.choice(self.mine)
        url, name = f"/v1/planner/posts/{post}", "/v1/planner/posts/{id}"
        opened = self.call("GET", url, f"GET {name}")
        if opened is None or not self.back_to_draft(post, opened["state"]):
            return
        text = f"Edited by the bench at {time.time():.0f}: fresh coffee, warm welcome."
        if self.call("PATCH", url, f"PATCH {name}", json={"text": text}) is not None:
            self.move(post, "approved")

    def back_to_draft(self, post: str, state: str) -> bool:
        """Take an approved or reviewed post back to a draft (as the last round left it)."""
        path = {"approved": ("in_review", "draft_ready"), "in_review": ("draft_ready",)}
        return all(self.move(post, to) for to in path.get(state, ()))

    def move(self, post: str, to: str) -> bool:
        name = f"POST /v1/planner/posts/{{id}}/transitions ({to})"
        url = f"/v1/planner/posts/{post}/transitions"
        return self.call("POST", url, name, json={"to": to}) is not None


class ChatVisitor(Person):
    """A visitor of the workspace's website: one token and conversation, then messages."""

    weight = 20
    wait_time = between(5, 15)

    def on_start(self) -> None:
        super().on_start()
        self.conversation: str | None = None
        self.visitor: dict[str, str] = {}
        origin = seed().origin
        minted = self.call(
            "POST",
            "/v1/chat/visitor-token",
            "POST /v1/chat/visitor-token",
            expect=201,
            json={"widget_key": self.workspace["widget_key"]},
            headers={"Origin": origin, "X-Forwarded-For": self.address},
        )
        if minted is None:
            return
        self.visitor = {
            "Authorization": f"Bearer {minted['token']}",
            "Origin": origin,
            "X-Forwarded-For": self.address,
        }
        started = self.call(
            "POST",
            "/v1/creator/chat/conversations",
            "POST /v1/creator/chat/conversations",
            expect=201,
            headers=self.visitor,
        )
        self.conversation = started["id"] if started else None

    @task
    def ask(self) -> None:
        if self.conversation is None:
            return
        self.call(
            "POST",
            f"/v1/creator/chat/{self.conversation}/messages",
            "POST /v1/creator/chat/{id}/messages",
            json={"text": random.choice(("When do you open?", "Do you have oat milk?"))},
            headers=self.visitor,
        )


class MiningUser(Person):
    weight = 5
    wait_time = between(10, 30)

    @task
    def mine_the_site(self) -> None:
        body = {
            "source": {"type": "website", "urls": [seed().site_url]},
            "limits": {"max_pages": 5, "max_depth": 1},
        }
        job = self.call("POST", "/v1/mining/jobs", "POST /v1/mining/jobs", expect=202, json=body)
        if job is None:
            return
        deadline = time.monotonic() + 60
        while job is not None and job["state"] in ("queued", "running"):
            if time.monotonic() > deadline:
                self.call("POST", f"/v1/mining/jobs/{job['id']}/cancel", "POST cancel", expect=202)
                return
            time.sleep(1.0)  # locust patched it: only this user waits
            job = self.call("GET", f"/v1/mining/jobs/{job['id']}", "GET /v1/mining/jobs/{id}")
        if job is not None:
            path = f"/v1/mining/jobs/{job['id']}/results"
            self.call("GET", path, "GET /v1/mining/jobs/{id}/results")


class LiveWatcher(Person):
    """The app's live connection: ``GET /v1/events`` held open, then opened again.

    Its latency is the time to the stream's first bytes (headers and the ``retry:``
    line); the stream itself is read until the user lets go."""

    weight = 20
    wait_time = between(1, 3)
    NAME = "GET /v1/events (first bytes)"

    @task
    def watch(self) -> None:
        started, clock = time.time(), time.perf_counter()
        status, error, sock = 0, None, None
        try:
            sock = self._open()
            status = self._status(sock)
        except OSError as exc:
            error = exc
        millis = (time.perf_counter() - clock) * 1000
        answer = _Answer(status)
        events.request.fire(
            request_type="GET",
            name=self.NAME,
            response_time=millis,
            response_length=0,
            response=answer,
            exception=error,
            start_time=started,
            context={"expect": 200},
            url="/v1/events",
        )
        if sock is not None:
            if status == 200:
                self._hold(sock, random.uniform(20, 40))
            sock.close()

    def _open(self) -> socket.socket:
        edge = urlsplit(str(self.host))
        address = (str(edge.hostname), edge.port or 80)
        sock = socket.create_connection(address, NETWORK_TIMEOUT)
        lines = [
            "GET /v1/events HTTP/1.1",
            f"Host: {edge.netloc}",
            "Accept: text/event-stream",
            *(f"{k}: {v}" for k, v in self.headers().items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock

    @staticmethod
    def _status(sock: socket.socket) -> int:
        """The answer's status, once its headers and first bytes have arrived."""
        received = b""
        while SEE_HEADERS not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        parts = received.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    @staticmethod
    def _hold(sock: socket.socket, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                if not sock.recv(4096):
                    return
            except TimeoutError:
                return


@dataclass(frozen=True)
class _Answer:
    status_code: int
