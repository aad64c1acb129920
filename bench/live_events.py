"""Live events (SSE): how many connections one gateway process holds, what each costs in
memory, and how fast one event reaches all of them.

A stack (PostgreSQL, NATS, the services; no Traefik) starts in a temporary folder with the
per-workspace connection cap lifted. One workspace signs up; ``--connections`` clients
open ``GET /v1/events`` straight at the gateway (raw asyncio sockets: the generator must
stay cheaper than what it measures), in batches, with the identity the gateway's
ForwardAuth mints. Then one event is published on JetStream for that workspace, and the
time until each connection has received it is measured.

How to read it: ``memory per connection`` is the growth of the gateway's resident memory
(VmRSS) divided by the connections open, so it includes uvicorn's and the stream's
buffers; ``fan-out`` times are from the publish to each client reading the event.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import nats
from rich.table import Table

from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.identity import IDENTITY_HEADER
from bench._load import console, expect, machine_rows, own_stack, raise_interrupt

ENV = {
    "BAI_LIVE_MAX_CONNECTIONS_PER_TENANT": "1000000",
    "BAI_LIVE_HEARTBEAT_SECONDS": "15",
    "BAI_RATE_LIMITS": json.dumps({"ip_auth": {"limit": 1_000_000}}),
}
BATCH = 250


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 15_000:
        parser.error("--connections is between 1 and 15000 (the file descriptor limit)")
    return args


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def identity(http: httpx.AsyncClient, token: str) -> str:
    response = await http.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})
    expect(response, 200, "ForwardAuth")
    return response.headers[IDENTITY_HEADER]


async def connect(host: str, port: int, token: str) -> Client:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"{IDENTITY_HEADER}: {token}\r\n\r\n".encode()
    )
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"/v1/events answered {status!r}")
    await reader.readuntil(b"retry: 2000\n\n")
    return Client(reader, writer)


async def open_all(base_url: str, token: str, count: int) -> tuple[list[Client], float]:
    host, port = base_url.removeprefix("http://").split(":")
    clients: list[Client] = []
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url) as http:
        while len(clients) < count:
            minted = await identity(http, token)  # identities live 60 s: one per batch
            size = min(BATCH, count - len(clients))
            clients += await asyncio.gather(
                *(connect(host, int(port), minted) for _ in range(size))
            )
    return clients, time.perf_counter() - started


async def arrival(client: Client, event_id: bytes) -> float:
    while event_id not in await client.reader.readuntil(b"\n\n"):
        pass
    return time.perf_counter()


async def fan_out(stack: Stack, tenant_id: str, clients: list[Client]) -> list[float]:
    """Seconds from publishing one event to each client having read it."""
    nc = await nats.connect(stack.nats_url)
    try:
        envelope = Envelope(
            id=f"evt_{uuid4().hex}",
            source="bench",
            type="bai.planner.bench.pinged.v1",
            time=datetime.now(UTC),
            tenantid=tenant_id,
            data={"ping": True},
        )
        sent = time.perf_counter()
        ack = await nc.jetstream().publish(envelope.type, envelope.to_bytes())
        event_id = f"id: {ack.stream}:{ack.seq}".encode()
        arrivals = await asyncio.wait_for(
            asyncio.gather(*(arrival(c, event_id) for c in clients)), timeout=60
        )
    finally:
        await nc.close()
    return [at - sent for at in arrivals]


async def measure(stack: Stack, count: int) -> dict[str, str]:
    base = stack.service_url("gateway")
    pid = stack.processes["gateway-api"].pid
    assert pid is not None
    async with httpx.AsyncClient(base_url=base) as http:
        signup = await http.post(
            "/v1/auth/signup",
            json={
                "email": f"bench-{uuid4().hex[:8]}@example.com",
                "password": "benchmark password",
                "workspace": "Bench",
            },
        )
    expect(signup, 201, "signup")
    token, tenant = signup.json()["access_token"], signup.json()["tenant_id"]
    before = rss_kib(pid)
    clients, opening = await open_all(base, token, count)
    after = rss_kib(pid)
    try:
        times = sorted(await fan_out(stack, tenant, clients))
    finally:
        for client in clients:
            client.writer.close()
    return {
        "connections open": f"{len(clients)}",
        "time to open them": f"{opening:.1f} s ({len(clients) / opening:.0f} per s)",
        "gateway RSS before / after": f"{before / 1024:.1f} MiB / {after / 1024:.1f} MiB",
        "memory per connection": f"{(after - before) / len(clients):.1f} KiB",
        "fan-out p50 / p99 / all": (
            f"{statistics.median(times) * 1000:.0f} / "
            f"{times[int(len(times) * 0.99) - 1] * 1000:.0f} / {times[-1] * 1000:.0f} ms"
        ),
    }


def render(rows: dict[str, str]) -> Table:
    table = Table(title="GET /v1/events on one gateway process", show_header=False)
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    load_before = os.getloadavg()
    with own_stack(ENV, only=["postgres", "nats", "migrations", "services"]) as stack:
        rows = asyncio.run(measure(stack, args.connections))
    console.print(render({**machine_rows(load_before), **rows}))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
