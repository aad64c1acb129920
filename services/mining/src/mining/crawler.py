"""The built-in crawler: polite, same-site by default, robots.txt obeyed, every fetch
through the SSRF-safe fetcher.

Breadth first from the start URLs, up to ``max_pages`` pages and ``max_depth`` links deep.
Each host's robots.txt is read once (a missing one allows everything; one that cannot be
read because the server fails disallows the host for this run, as crawlers do). Requests
to one host are spaced by ``delay_seconds``. A start URL that is refused or unreachable
fails that URL, not the job: it is reported and the crawl goes on.
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from bai_platform.safe_fetch import FetchFailed, FetchRefused, SafeFetcher
from mining.extract import PageData, extract

OnPage = Callable[[PageData], Awaitable[None]]
# (what happened, whether it is an error): a page robots.txt keeps us from is not one.
OnProblem = Callable[[str, bool], Awaitable[None]]
ShouldStop = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Plan:
    urls: tuple[str, ...]
    same_site: bool
    max_pages: int
    max_depth: int


class Crawler:
    def __init__(self, fetcher: SafeFetcher, *, user_agent: str, delay_seconds: float) -> None:
        self._fetcher, self._agent, self._delay = fetcher, user_agent, delay_seconds
        self._robots: dict[str, Protego | None] = {}
        self._last_hit: dict[str, float] = {}

    async def run(
        self, plan: Plan, *, on_page: OnPage, on_problem: OnProblem, should_stop: ShouldStop
    ) -> int:
        """Crawl; returns the number of pages fetched."""
        sites = {_site(u) for u in plan.urls}
        queue = deque((_clean(u), 0) for u in plan.urls)
        seen = {url for url, _ in queue}
        fetched = 0
        while queue and fetched < plan.max_pages and not await should_stop():
            url, depth = queue.popleft()
            page = await self._page(url, on_problem)
            if page is None:
                continue
            fetched += 1
            await on_page(page)
            if depth >= plan.max_depth:
                continue
            for link in page.links:
                link = _clean(link)
                if link in seen or (plan.same_site and _site(link) not in sites):
                    continue
                seen.add(link)
                queue.append((link, depth + 1))
        return fetched

    async def _page(self, url: str, on_problem: OnProblem) -> PageData | None:
        if not await self._allowed(url):
            await on_problem(f"{_short(url)}: skipped, robots.txt disallows it", False)
            return None
        try:
            await self._polite(url)
            got = await self._fetcher.fetch(url)
        except (FetchRefused, FetchFailed) as exc:
            await on_problem(f"{_short(url)}: {exc}", True)
            return None
        if got.status >= 400:
            await on_problem(f"{_short(url)}: the site answered {got.status}", True)
            return None
        return extract(got.body.decode("utf-8", errors="replace"), url=got.url)

    async def _allowed(self, url: str) -> bool:
        site = _origin(url)
        if site not in self._robots:
            self._robots[site] = await self._read_robots(site)
        rules = self._robots[site]
        if rules is None:
            return False
        return bool(rules.can_fetch(url, self._agent))

    async def _read_robots(self, site: str) -> Protego | None:
        try:
            await self._polite(site)
            got = await self._fetcher.fetch(f"{site}/robots.txt")
        except FetchRefused:
            return Protego.parse("")  # the site itself will be refused page by page
        except FetchFailed:
            return Protego.parse("")  # unreachable: each page will say so
        if got.status >= 500:
            return None
        if got.status >= 400:
            return Protego.parse("")
        return Protego.parse(got.body.decode("utf-8", errors="replace"))

    async def _polite(self, url: str) -> None:
        host = _origin(url)
        wait = self._last_hit.get(host, 0.0) + self._delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_hit[host] = time.monotonic()


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
