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

Hostile input is a per-URL problem, never an exception out of the crawl: a link that
cannot be parsed (``http://x:99999/``, ``http://[::1/``) is skipped and counted in one
note per page; a malformed answer (``Retry-After: ²``) or any other surprise while
fetching or reading one URL fails that URL. Pages are read on a worker thread
(``asyncio.to_thread``), so even a large page never holds up the event loop, and
robots.txt is read at most ``MAX_ROBOTS_BYTES`` deep, also off the loop.

What a crawl costs (``Problem.pages`` and each page read): one page for every URL whose
request went out, whatever came back (a page, a 404, a timeout after a tarpit held the
slot, a malformed answer); nothing for a URL robots.txt keeps us from or that the SSRF
rules refuse before connecting. Such fetches count against ``max_pages`` like pages read,
so a crawl never costs more than ``max_pages``. When ``Plan.deadline_seconds`` passes,
every fetch still running is stopped, counted as fetched, and one problem says so. If the
crawl itself fails (a bug, the database gone), the other workers are cancelled with it.
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import structlog
from protego import Protego

from bai_platform.safe_fetch import Fetched, FetchFailed, FetchRefused, SafeFetcher
from mining.service.extract import PageData, extract

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
MAX_ROBOTS_BYTES = 512 * 1024  # what Google reads of a robots.txt (500 KiB)
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Problem:
    """What went wrong with one URL (or with the crawl), fit to show the job's owner.

    ``error``: whether it counts as an error (a page robots.txt keeps us from does not);
    ``pages``: how many fetches it cost (see the module docstring).
    """

    text: str
    error: bool = True
    pages: int = 0


OnPage = Callable[[PageData], Awaitable[None]]
OnProblem = Callable[[Problem], Awaitable[None]]
ShouldStop = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Plan:
    urls: tuple[str, ...]
    same_site: bool
    max_pages: int
    max_depth: int
    # Wall-clock limit of the whole crawl; None: none.
    deadline_seconds: float | None = None


class Crawler:
    """The crawl settings; every ``run`` has its own robots.txt, politeness and slots, so
    one crawler serves several jobs at once without one job's hosts slowing another's."""

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
        self.fetcher, self.agent, self.delay = fetcher, user_agent, delay_seconds
        self.concurrency, self.host_concurrency = concurrency, host_concurrency
        self.retries, self.retry_base = retries, retry_base_seconds

    async def run(
        self, plan: Plan, *, on_page: OnPage, on_problem: OnProblem, should_stop: ShouldStop
    ) -> int:
        """Crawl; returns the number of pages read."""
        crawl = _Crawl(self, plan, on_page=on_page, on_problem=on_problem)
        for url in plan.urls:
            if _clean(url) is None:
                await on_problem(Problem(f"{url[:100]}: not a URL that can be fetched"))
        try:
            async with asyncio.timeout(plan.deadline_seconds):
                await crawl.run(should_stop)
        except TimeoutError:
            await crawl.out_of_time()
        finally:
            crawl.close()
        return crawl.read


class _Crawl:
    """One crawl: the queue, the page slots, and what was read and fetched."""

    def __init__(
        self, crawler: Crawler, plan: Plan, *, on_page: OnPage, on_problem: OnProblem
    ) -> None:
        self._c, self._plan = crawler, plan
        self._on_page, self._on_problem = on_page, on_problem
        self._robots: dict[str, asyncio.Task[Protego | None]] = {}
        self._next_start: dict[str, float] = {}
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._sites = {site for u in plan.urls if (site := _site(u)) is not None}
        self._queue = deque((url, 0) for u in plan.urls if (url := _clean(u)) is not None)
        self._seen = {url for url, _ in self._queue}
        self._changed = asyncio.Condition()
        self._stopped = False
        self.read = 0  # pages read
        self._charged = 0  # fetches that ended and cost a page (see the module docstring)
        self._in_flight = 0  # URLs taken, not yet done
        self._cut_off = 0  # fetches the deadline stopped

    async def run(self, should_stop: ShouldStop) -> None:
        # A task group: if one worker fails, the others are cancelled with it.
        async with asyncio.TaskGroup() as group:
            for _ in range(max(self._c.concurrency, 1)):
                group.create_task(self._worker(should_stop))

    def close(self) -> None:
        """Stop robots.txt reads still running: nothing of the crawl outlives it."""
        for task in self._robots.values():
            task.cancel()

    async def out_of_time(self) -> None:
        """The deadline passed: page requests that were on their way cost a page each (a
        URL waiting for its host, or between two tries, costs nothing)."""
        limit = f"{self._plan.deadline_seconds:g} s"
        text = f"the crawl reached its time limit ({limit}) and was stopped"
        await self._on_problem(Problem(text, pages=self._cut_off))
        self._cut_off = 0

    async def _next_url(self) -> tuple[str, int] | None:
        """The next URL to fetch, once a page slot is free; None when the crawl is over."""
        async with self._changed:
            while True:
                if self._stopped or (not self._queue and self._in_flight == 0):
                    return None
                if self._queue and self._charged + self._in_flight < self._plan.max_pages:
                    self._in_flight += 1
                    return self._queue.popleft()
                if self._in_flight == 0:  # every page slot is used: the crawl is over
                    return None
                await self._changed.wait()

    async def _worker(self, should_stop: ShouldStop) -> None:
        while (taken := await self._next_url()) is not None:
            url, depth = taken
            try:
                if await should_stop():
                    self._stopped = True
                elif (page := await self._page(url)) is not None:
                    self.read += 1
                    await self._on_page(page)
                    if depth < self._plan.max_depth:
                        # While this URL still holds its slot, or the crawl could look over.
                        await self._follow(page, depth + 1)
            finally:
                async with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

    async def _follow(self, page: PageData, depth: int) -> None:
        """Queue the page's links that are new and allowed; note the malformed ones."""
        links, malformed = _parse_links(page.links)
        async with self._changed:
            for link, site in links:
                if link not in self._seen and (not self._plan.same_site or site in self._sites):
                    self._seen.add(link)
                    self._queue.append((link, depth))
            self._changed.notify_all()
        if malformed:
            text = f"{_short(page.url)}: {malformed} malformed link(s) skipped"
            await self._on_problem(Problem(text, error=False))

    async def _page(self, url: str) -> PageData | None:
        """The page at ``url``, or None after reporting why not (never raises for it)."""
        try:
            return await self._read(url)
        except Exception as exc:  # hostile input of any kind fails the URL, not the crawl
            await self._unreadable(url, exc, pages=0)
            return None

    async def _read(self, url: str) -> PageData | None:
        if not await self._allowed(url):
            text = f"{_short(url)}: skipped, robots.txt disallows it"
            await self._on_problem(Problem(text, error=False))
            return None
        try:
            got = await self._fetch_counted(url)
        except FetchRefused as exc:  # no request went out (or only redirects): free
            await self._on_problem(Problem(f"{_short(url)}: {exc}"))
            return None
        except FetchFailed as exc:
            await self._on_problem(Problem(f"{_short(url)}: {exc}", pages=1))
            return None
        except Exception as exc:  # e.g. a malformed header in the answer
            await self._unreadable(url, exc, pages=1)
            return None
        if got.status >= 400:
            await self._on_problem(
                Problem(f"{_short(url)}: the site answered {got.status}", pages=1)
            )
            return None
        try:
            return await asyncio.to_thread(_extract, got)
        except Exception as exc:
            await self._unreadable(url, exc, pages=1)
            return None

    async def _unreadable(self, url: str, exc: Exception, *, pages: int) -> None:
        log.warning("crawl_url_failed", url=_short(url), error=type(exc).__name__)
        text = f"{_short(url)}: could not be read ({type(exc).__name__})"
        await self._on_problem(Problem(text, pages=pages))

    async def _fetch_counted(self, url: str) -> Fetched:
        """The fetch with its retries; once it ends it takes a page slot for good, unless
        it was refused (no request went out) or cut off (``out_of_time`` counts those)."""
        charged = True
        try:
            return await self._fetch_with_retries(url)
        except (FetchRefused, asyncio.CancelledError):
            charged = False
            raise
        finally:
            self._charged += charged

    async def _fetch_with_retries(self, url: str) -> Fetched:
        for attempt in range(self._c.retries):
            try:
                got = await self._fetch(url)
            except FetchFailed as exc:
                if not exc.retryable:
                    raise
                await asyncio.sleep(self._c.retry_base * 2**attempt)
                continue
            if got.status not in RETRY_STATUSES:
                return got
            wait = self._c.retry_base * 2**attempt
            if got.retry_after is not None:
                wait = min(got.retry_after, MAX_RETRY_AFTER)
            await asyncio.sleep(wait)
        return await self._fetch(url)  # the last try: whatever it gives

    async def _fetch(self, url: str, *, page: bool = True) -> Fetched:
        """One request, within the host's concurrency and spacing. A page's request that the
        deadline cuts off while it is on its way is counted in ``_cut_off``."""
        host = _origin(url)
        slots = self._host_slots.setdefault(host, asyncio.Semaphore(self._c.host_concurrency))
        async with slots:
            await self._polite(host)
            try:
                return await self._c.fetcher.fetch(url)
            except asyncio.CancelledError:
                self._cut_off += page
                raise

    async def _allowed(self, url: str) -> bool:
        site = _origin(url)
        if site not in self._robots:  # read once, however many workers ask at the same time
            self._robots[site] = asyncio.ensure_future(self._read_robots(site))
        rules = await self._robots[site]
        if rules is None:
            return False
        return await asyncio.to_thread(rules.can_fetch, url, self._c.agent)

    async def _read_robots(self, site: str) -> Protego | None:
        try:
            got = await self._fetch(f"{site}/robots.txt", page=False)
        except FetchRefused:
            return Protego.parse("")  # the site itself will be refused page by page
        except FetchFailed:
            return Protego.parse("")  # unreachable: each page will say so
        if got.status >= 500:
            return None
        if got.status >= 400:
            return Protego.parse("")
        text = got.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        return await asyncio.to_thread(Protego.parse, text)

    async def _polite(self, host: str) -> None:
        """Wait for this host's next start time, and book the one after it."""
        now = time.monotonic()
        start = max(now, self._next_start.get(host, 0.0))
        self._next_start[host] = start + self._c.delay
        if start > now:
            await asyncio.sleep(start - now)


def _extract(got: Fetched) -> PageData:
    """Runs on a worker thread: linear, but a 2 MiB page is still work."""
    return extract(got.body.decode("utf-8", errors="replace"), url=got.url)


def _parse_links(links: Iterable[str]) -> tuple[list[tuple[str, str]], int]:
    """(link, site) for each link that parses, and how many did not."""
    parsed: list[tuple[str, str]] = []
    malformed = 0
    for link in links:
        clean = _clean(link)
        site = _site(clean) if clean is not None else None
        if clean is None or site is None:
            malformed += 1
        else:
            parsed.append((clean, site))
    return parsed, malformed


def _site(url: str) -> str | None:
    """What "the same site" compares: the host without www., and the port; None when the
    URL cannot be parsed (a port out of range, a broken IPv6 literal)."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower().removeprefix("www."), parts.port
    except ValueError:
        return None
    return f"{host}:{port}" if port else host


def _origin(url: str) -> str:
    """Where robots.txt lives and what politeness spaces: scheme, host and port exactly.

    Only called with URLs that ``_clean`` accepted, so the port parses."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def _clean(url: str) -> str | None:
    """The URL without its fragment, with a path; None when it cannot be parsed."""
    try:
        parts = urlsplit(url)
        _port = parts.port  # a port out of range raises here, not later in the crawl
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def _short(url: str) -> str:
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))[:200]
    except ValueError:
        return url[:100]
