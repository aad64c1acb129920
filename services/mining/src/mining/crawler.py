"""The built-in crawler: polite, same-site by default, robots.txt obeyed, every fetch
through the SSRF-safe fetcher.

Breadth first from the start URLs, up to ``max_pages`` pages and ``max_depth`` links deep.
Each host's robots.txt is read once per crawl (a missing one allows everything; one that
cannot be read because the server fails disallows the host for this run, as crawlers do).

Politeness: at most ``host_concurrency`` requests to one host at a time (1 by default),
their starts spaced by ``delay_seconds``; several hosts (start URLs on different sites, or
``same_site`` off) are crawled side by side, up to ``concurrency`` requests in all.

Retries: a fetch that may pass later (a timeout, a connection reset, a 429 or a 5xx) is
tried again up to ``retries`` times, after ``retry_base_seconds`` doubling each time, or
after the site's ``Retry-After`` when it gives one (capped at ``MAX_RETRY_AFTER``). A
refusal (an internal address, a content type that is not a page, a 4xx) is not retried.
A URL that still fails fails that URL, not the job: it is reported and the crawl goes on.
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from bai_platform.safe_fetch import Fetched, FetchFailed, FetchRefused, SafeFetcher
from mining.extract import PageData, extract

OnPage = Callable[[PageData], Awaitable[None]]
# (what happened, whether it is an error): a page robots.txt keeps us from is not one.
OnProblem = Callable[[str, bool], Awaitable[None]]
ShouldStop = Callable[[], Awaitable[bool]]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    urls: tuple[str, ...]
    same_site: bool
    max_pages: int
    max_depth: int


class Crawler:
    def __init__(
        self,
        fetcher: SafeFetcher,
        *,
        user_agent: str,
        delay_seconds: float,
        concurrency: int = 4,
        host_concurrency: int = 1,
        retries: int = 2,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self._fetcher, self._agent, self._delay = fetcher, user_agent, delay_seconds
        self._concurrency, self._host_concurrency = concurrency, host_concurrency
        self._retries, self._retry_base = retries, retry_base_seconds
        self._robots: dict[str, asyncio.Task[Protego | None]] = {}
        self._next_start: dict[str, float] = {}
        self._host_slots: dict[str, asyncio.Semaphore] = {}

    async def run(
        self, plan: Plan, *, on_page: OnPage, on_problem: OnProblem, should_stop: ShouldStop
    ) -> int:
        """Crawl; returns the number of pages fetched."""
        self._robots = {}  # robots.txt is read again by every crawl: sites change them
        sites = {_site(u) for u in plan.urls}
        queue = deque((_clean(u), 0) for u in plan.urls)
        seen = {url for url, _ in queue}
        changed = asyncio.Condition()
        fetched = in_flight = 0
        stopped = False

        async def next_url() -> tuple[str, int] | None:
            """The next URL to fetch, once a page slot is free; None when the crawl is over."""
            nonlocal in_flight
            async with changed:
                while True:
                    if stopped or (not queue and in_flight == 0):
                        return None
                    if queue and fetched + in_flight < plan.max_pages:
                        in_flight += 1
                        return queue.popleft()
                    if in_flight == 0:  # every page slot is used: the crawl is over
                        return None
                    await changed.wait()

        async def worker() -> None:
            nonlocal fetched, in_flight, stopped
            while (taken := await next_url()) is not None:
                url, depth = taken
                page = None
                try:
                    if await should_stop():
                        stopped = True
                    else:
                        page = await self._page(url, on_problem)
                        if page is not None:
                            fetched += 1
                            await on_page(page)
                finally:
                    async with changed:
                        in_flight -= 1
                        if page is not None and depth < plan.max_depth:
                            for link in map(_clean, page.links):
                                same = not plan.same_site or _site(link) in sites
                                if link not in seen and same:
                                    seen.add(link)
                                    queue.append((link, depth + 1))
                        changed.notify_all()

        await asyncio.gather(*(worker() for _ in range(max(self._concurrency, 1))))
        return fetched

    async def _page(self, url: str, on_problem: OnProblem) -> PageData | None:
        if not await self._allowed(url):
            await on_problem(f"{_short(url)}: skipped, robots.txt disallows it", False)
            return None
        try:
            got = await self._fetch_with_retries(url)
        except (FetchRefused, FetchFailed) as exc:
            await on_problem(f"{_short(url)}: {exc}", True)
            return None
        if got.status >= 400:
            await on_problem(f"{_short(url)}: the site answered {got.status}", True)
            return None
        return extract(got.body.decode("utf-8", errors="replace"), url=got.url)

    async def _fetch_with_retries(self, url: str) -> Fetched:
        for attempt in range(self._retries):
            try:
                got = await self._fetch(url)
            except FetchFailed as exc:
                if not exc.retryable:
                    raise
                await asyncio.sleep(self._retry_base * 2**attempt)
                continue
            if got.status not in RETRY_STATUSES:
                return got
            wait = self._retry_base * 2**attempt
            if got.retry_after is not None:
                wait = min(got.retry_after, MAX_RETRY_AFTER)
            await asyncio.sleep(wait)
        return await self._fetch(url)  # the last try: whatever it gives

    async def _fetch(self, url: str) -> Fetched:
        """One request, within the host's concurrency and spacing."""
        host = _origin(url)
        slots = self._host_slots.setdefault(host, asyncio.Semaphore(self._host_concurrency))
        async with slots:
            await self._polite(host)
            return await self._fetcher.fetch(url)

    async def _allowed(self, url: str) -> bool:
        site = _origin(url)
        if site not in self._robots:  # read once, however many workers ask at the same time
            self._robots[site] = asyncio.ensure_future(self._read_robots(site))
        rules = await self._robots[site]
        if rules is None:
            return False
        return bool(rules.can_fetch(url, self._agent))

    async def _read_robots(self, site: str) -> Protego | None:
        try:
            got = await self._fetch(f"{site}/robots.txt")
        except FetchRefused:
            return Protego.parse("")  # the site itself will be refused page by page
        except FetchFailed:
            return Protego.parse("")  # unreachable: each page will say so
        if got.status >= 500:
            return None
        if got.status >= 400:
            return Protego.parse("")
        return Protego.parse(got.body.decode("utf-8", errors="replace"))

    async def _polite(self, host: str) -> None:
        """Wait for this host's next start time, and book the one after it."""
        now = time.monotonic()
        start = max(now, self._next_start.get(host, 0.0))
        self._next_start[host] = start + self._delay
        if start > now:
            await asyncio.sleep(start - now)


def _site(url: str) -> str:
    """What "the same site" compares: the host without www., and the port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    return f"{host}:{parts.port}" if parts.port else host


def _origin(url: str) -> str:
    """Where robots.txt lives and what politeness spaces: scheme, host and port exactly."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def _clean(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def _short(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
