"""Rate limits: named quotas counted per key, in this process or in a shared Valkey.

Strategy: moving window (``limits.aio.strategies.MovingWindowRateLimiter``). Each bucket
keeps the timestamps of its last ``limit`` accepted hits, and a hit passes only if fewer
than ``limit`` of them fall in the last ``window_seconds``. That makes the contract exact:
N hits pass and hit N+1 is denied in *any* window, not only in windows aligned to a clock.
The alternatives lose that: a fixed window lets 2N through across a window edge (20 login
attempts in a second under a 10/min quota), and the sliding-window counter estimates the
previous window's share, so it may pass a few more or fewer than N (and its in-memory
and Valkey backends align windows differently). The moving window also gives an exact
``Retry-After``: the moment the oldest counted hit leaves the window. Denied hits are not
recorded, so a caller that keeps hammering is not locked out beyond one window. The
price is memory in O(limit) per active bucket (a tenant on a 6000/min plan keeps up to
6000 timestamps, about 100 KB in Valkey) and two store round trips per bucket: an atomic
Lua acquire, then the window's state for the headers. ``check_all`` runs its buckets
concurrently, so a request costs two round trips whatever the number of buckets.

Storage: in-memory by default (one count per process: right for one replica and for
dev). A ``redis://``, ``rediss://``, ``valkey://`` or ``valkeys://`` URL makes replicas
share counts; every scheme goes through the ``valkey`` client (``limits[async-valkey]``),
because the client ``limits`` picks by default for ``redis://`` is coredis, which we do
not install. We build the connection pool ourselves so that ``close()`` can release it
(``limits`` storages have no close) and so that short socket timeouts bound what a
stalled store costs a request.

When the shared store fails, ``fail_open`` decides: allow (the decision carries
``store_unavailable``; a warning is logged once per outage, not once per request) or
deny with ``store_unavailable`` set, which the caller answers with 503, not 429. Either
way the headers report only the policy, since nothing was counted.

Time: the in-memory store and the ``Retry-After`` arithmetic read ``clock`` (``time.time``
unless a test gives its own, to move time without sleeping); a shared store keeps the
store's clock.

Headers follow draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Policy: "name";q=;w=``
and ``RateLimit: "name";r=;t=``, plus ``Retry-After`` (at least 1 s) on a denial.
"""

import asyncio
import bisect
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv6Address, IPv6Network, ip_address
from typing import Self
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.memory import Entry
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from valkey.asyncio import ConnectionPool

logger = logging.getLogger(__name__)

SHARED_SCHEMES = frozenset({"redis", "rediss", "valkey", "valkeys"})
KEY_PREFIX = "bai-ratelimit"
# Long enough that clients do not pile onto a store that is failing over.
STORE_DOWN_RETRY_AFTER = 5
# Seconds since the epoch, as time.time gives them.
Clock = Callable[[], float]
# The name is written into a quoted header value, so it is kept to a safe alphabet.
_POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class PolicyName(StrEnum):
    IP_AUTH = "ip-auth"
    IP_PUBLIC = "ip-public"
    CREDENTIAL = "credential"
    TENANT = "tenant"
    VISITOR = "visitor"
    WIDGET = "widget"
    MINT_IP = "visitor-token-ip"
    MINT_WIDGET = "visitor-token-widget"


@dataclass(frozen=True, slots=True)
class Policy:
    """At most ``limit`` hits in any ``window_seconds`` long window, per key."""

    name: str
    limit: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not _POLICY_NAME.fullmatch(self.name):
            raise ValueError(f"policy names use a-z, 0-9 and '-': {self.name!r}")
        if self.limit < 1 or self.window_seconds < 1:
            raise ValueError("a policy needs limit >= 1 and window_seconds >= 1")


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit. With ``store_unavailable`` nothing was counted, so
    ``remaining`` and ``reset_after`` are placeholders (full quota, or the 503's wait)."""

    allowed: bool
    policy: Policy
    remaining: int
    reset_after: int
    store_unavailable: bool = False

    @property
    def retry_after(self) -> int:
        """Seconds a denied caller should wait; never 0, which clients read as 'now'."""
        return max(1, self.reset_after)


class Quota(BaseModel):
    model_config = ConfigDict(frozen=True)

    limit: int = Field(ge=1)
    window_seconds: int = Field(default=60, ge=1, le=86_400)

    def policy(self, name: str) -> Policy:
        return Policy(name=name, limit=self.limit, window_seconds=self.window_seconds)


def _default_plans() -> dict[str, Quota]:
    return {"starter": Quota(limit=1200), "growth": Quota(limit=3000), "agency": Quota(limit=6000)}


class RateLimitSettings(BaseModel):
    """Where counts live, what a store outage does, and each policy's quota.

    Website chat visitors never count against their workspace's ``tenant`` bucket, so a
    visitor flood cannot lock the team out: each visitor has a bucket (``visitor``) and
    all visitors of a widget share one (``widget``). New visitor identities are rationed
    where they are minted, per client IP (``visitor_token_ip``) and per widget
    (``visitor_token_widget``), so a fresh visitor id per token buys no fresh quota.
    """

    # May carry a password (redis://:secret@host).
    storage_url: SecretStr | None = None
    fail_open: bool = True
    store_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    ip_auth: Quota = Quota(limit=10)
    ip_public: Quota = Quota(limit=60)
    credential: Quota = Quota(limit=600)
    tenant_plans: dict[str, Quota] = Field(default_factory=_default_plans)
    default_plan: str = "starter"
    # A visitor posts a message now and then; nobody types 30 a minute.
    visitor: Quota = Quota(limit=30)
    widget: Quota = Quota(limit=300)
    # The widget mints once per browser tab session (the token lasts an hour).
    visitor_token_ip: Quota = Quota(limit=20, window_seconds=3600)
    visitor_token_widget: Quota = Quota(limit=2000, window_seconds=3600)

    @model_validator(mode="after")
    def _default_plan_has_a_quota(self) -> Self:
        if self.default_plan not in self.tenant_plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not in tenant_plans")
        return self

    @property
    def ip_auth_policy(self) -> Policy:
        return self.ip_auth.policy(PolicyName.IP_AUTH)

    @property
    def ip_public_policy(self) -> Policy:
        return self.ip_public.policy(PolicyName.IP_PUBLIC)

    @property
    def credential_policy(self) -> Policy:
        return self.credential.policy(PolicyName.CREDENTIAL)

    @property
    def visitor_policy(self) -> Policy:
        return self.visitor.policy(PolicyName.VISITOR)

    @property
    def widget_policy(self) -> Policy:
        return self.widget.policy(PolicyName.WIDGET)

    @property
    def mint_ip_policy(self) -> Policy:
        return self.visitor_token_ip.policy(PolicyName.MINT_IP)

    @property
    def mint_widget_policy(self) -> Policy:
        return self.visitor_token_widget.policy(PolicyName.MINT_WIDGET)

    def tenant_policy(self, plan: str | None) -> Policy:
        """The tenant quota of ``plan``; no plan or an unknown one gets the default plan's."""
        fallback = self.tenant_plans[self.default_plan]
        return self.tenant_plans.get(plan or "", fallback).policy(PolicyName.TENANT)


class RateLimiter:
    """Counts hits per (policy, key) in this process's memory or in a shared Valkey/Redis."""

    def __init__(
        self,
        *,
        storage_url: str | None = None,
        fail_open: bool = True,
        store_timeout: float = 0.25,
        key_prefix: str = KEY_PREFIX,
        clock: Clock = time.time,
    ) -> None:
        self._fail_open, self._clock = fail_open, clock
        self._storage, self._pool = _open_store(storage_url, store_timeout, key_prefix, clock)
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._store_down = False

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> Self:
        url = settings.storage_url.get_secret_value() if settings.storage_url else None
        return cls(
            storage_url=url,
            fail_open=settings.fail_open,
            store_timeout=settings.store_timeout_seconds,
        )

    @property
    def shared(self) -> bool:
        """Whether counts are shared with other replicas through a store."""
        return self._pool is not None

    async def hit(self, policy: Policy, key: str) -> Decision:
        """Consume one hit of ``policy`` for ``key``.

        ``key`` is a client IP key, a user id, an API key's id or a tenant id; never a
        secret, since it is stored in the clear.
        """
        item = _item(policy)
        try:
            allowed = await self._strategy.hit(item, policy.name, key)
            stats = await self._strategy.get_window_stats(item, policy.name, key)
        except StorageError as exc:
            return self._store_failed(policy, exc)
        self._store_answered()
        reset_after = max(0, math.ceil(stats.reset_time - self._clock()))
        return Decision(allowed, policy, max(0, stats.remaining), reset_after)

    async def check_all(self, hits: Sequence[tuple[Policy, str]]) -> Decision:
        """Consume one hit in every bucket; the most restrictive decision answers."""
        if not hits:
            raise ValueError("check_all needs at least one (policy, key)")
        decisions = await asyncio.gather(*(self.hit(policy, key) for policy, key in hits))
        return min(decisions, key=_restrictiveness)

    async def store_available(self) -> bool:
        """Whether the store answers now (always true in memory); for readiness checks."""
        return await self._storage.check()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        elif isinstance(self._storage, MemoryStorage) and self._storage.timer is not None:
            # The storage sweeps expired hits in a task of its own; do not leave it pending.
            self._storage.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._storage.timer

    def _store_failed(self, policy: Policy, exc: StorageError) -> Decision:
        if not self._store_down:
            self._store_down = True
            # Once per outage: every request would otherwise log the same line.
            outcome = "allowing" if self._fail_open else "refusing"
            logger.warning(
                "rate-limit store unavailable, %s requests: %r", outcome, exc.storage_error
            )
        if self._fail_open:
            return Decision(True, policy, policy.limit, 0, store_unavailable=True)
        return Decision(False, policy, 0, STORE_DOWN_RETRY_AFTER, store_unavailable=True)

    def _store_answered(self) -> None:
        if self._store_down:
            self._store_down = False
            logger.info("rate-limit store reachable again")


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The draft-ietf-httpapi-ratelimit-headers fields, plus Retry-After on a denial."""
    policy = decision.policy
    headers = {"RateLimit-Policy": f'"{policy.name}";q={policy.limit};w={policy.window_seconds}'}
    if not decision.store_unavailable:
        headers["RateLimit"] = f'"{policy.name}";r={decision.remaining};t={decision.reset_after}'
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after)
    return headers


def client_ip_key(address: str) -> str:
    """The bucket key of a client address: IPv4 as is, IPv6 by its /64.

    One IPv6 subscriber usually holds a whole /64; counting single addresses would give
    each caller 2**64 buckets.
    """
    ip = ip_address(address.strip())
    if not isinstance(ip, IPv6Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(IPv6Network((int(ip) >> 64 << 64, 64)))


def _restrictiveness(decision: Decision) -> tuple[bool, int, int]:
    # Denied before allowed, then the least remaining, then the longest wait.
    return (decision.allowed, decision.remaining, -decision.reset_after)


@lru_cache(maxsize=256)
def _item(policy: Policy) -> RateLimitItem:
    # ``limits`` keys a bucket by amount and window too, so a changed quota counts afresh.
    return RateLimitItemPerSecond(policy.limit, policy.window_seconds)


class SweepingMemoryStorage(MemoryStorage):
    """``limits``' in-memory storage on ``clock``, its expired hits swept at most once a
    second, inline.

    ``limits`` 5.8 starts a sweep after every hit that finds the last sweep done, and the
    sweep hands every key to a thread (``asyncio.to_thread``) for one bisect: under load
    that was about a third of the gateway's CPU (py-spy on ``bench/edge_vs_direct.py``).
    A hit is judged by the timestamps of its own bucket, never by the sweep, so the sweep
    only frees the memory of buckets gone quiet; once a second, on the event loop, does.

    The moving window's two operations are the library's, reading ``clock`` instead of
    ``time.time`` (the library's own read the system clock where they stand).
    """

    SWEEP_INTERVAL_SECONDS = 1.0

    def __init__(self, clock: Clock = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._next_sweep = 0.0

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        await self._MemoryStorage__schedule_expiry()
        async with self.locks[key]:
            events = self.events.setdefault(key, [])
            now = self._clock()
            # Newest first: the hit ``limit - amount`` back decides whether there is room.
            if len(events) > limit - amount and events[limit - amount].atime >= now - expiry:
                return False
            events[:0] = [_entry(now, expiry)] * amount
            return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = self._clock()
        if events := self.events.get(key, []):
            oldest = bisect.bisect_left(events, -(now - expiry), key=lambda entry: -entry.atime)
            return events[oldest - 1].atime, oldest
        return now, 0

    # The library's private hooks, by their mangled names: acquire_entry and incr call
    # the first; the second is the sweep, rewritten without a thread per key.
    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (mangled name)
        now = self._clock()
        if now >= self._next_sweep and (self.timer is None or self.timer.done()):
            self._next_sweep = now + self.SWEEP_INTERVAL_SECONDS
            self.timer = asyncio.create_task(self._MemoryStorage__expire_events())

    async def _MemoryStorage__expire_events(self) -> None:  # noqa: N802 (mangled name)
        now = self._clock()
        for key, events in list(self.events.items()):
            # Newest first: keep the hits that have not expired yet.
            kept = bisect.bisect_left(events, -now, key=lambda event: -event.expiry)
            if kept:
                self.events[key] = events[:kept]
            else:
                self.events.pop(key, None)
                self.locks.pop(key, None)
        for key, expiry in list(self.expirations.items()):
            if expiry <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)


def _entry(now: float, expiry: int) -> Entry:
    """The library's moving-window entry, stamped ``now`` instead of ``time.time()``."""
    entry = Entry.__new__(Entry)
    entry.atime, entry.expiry = now, now + expiry
    return entry


def _open_store(
    storage_url: str | None, timeout: float, key_prefix: str, clock: Clock
) -> tuple[Storage, ConnectionPool | None]:
    if not storage_url or urlsplit(storage_url).scheme == "memory":
        return SweepingMemoryStorage(clock), None
    scheme = urlsplit(storage_url).scheme
    if scheme not in SHARED_SCHEMES:
        # The scheme only: the URL may carry a password.
        raise ValueError(f"rate-limit storage {scheme!r} is not memory or {sorted(SHARED_SCHEMES)}")
    pool = ConnectionPool.from_url(
        storage_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    storage = RedisStorage(
        f"async+{storage_url}",
        wrap_exceptions=True,
        implementation="valkey",
        key_prefix=key_prefix,
        # limits types its pass-through options as scalars; valkey takes the pool as is.
        connection_pool=pool,  # type: ignore[arg-type]
    )
    return storage, pool
