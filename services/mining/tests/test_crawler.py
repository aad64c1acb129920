"""The crawler on a local fixture site: same site, depth, robots.txt, refused redirects."""

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bai_platform.safe_fetch import SafeFetcher
from bai_testing.sites import Site, website
from mining.service import crawler as crawler_module
from mining.service.crawler import Crawler, Plan, Problem
from mining.service.extract import PageData

from .conftest import hostile_site

HOME = """<html><head><title>Acme Coffee</title></head><body>
<a href="/about">About</a> <a href="/contact">Contact</a> <a href="/private/prices">Prices</a>
<a href="/go-inside">Staff</a> <a href="https://elsewhere.example/">Partner</a>
</body></html>"""
ABOUT = """<html><body><p>Write to info [at] acme [dot] example</p>
<a href="/deeper">Deeper</a></body></html>"""
CONTACT = """<html><head><script type="application/ld+json">
{"@type": "CafeOrCoffeeShop", "name": "Acme Coffee", "telephone": "+34 912 345 678",
 "email": "hello@acme.example"}</script></head><body>Call us</body></html>"""
DEEPER = "<html><body><a href='/deepest'>on</a> sales@acme.example</body></html>"


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    fixture = Site(
        pages={
            "/": HOME,
            "/about": ABOUT,
            "/contact": CONTACT,
            "/deeper": DEEPER,
            "/private/prices": HOME,
        },
        redirects={"/go-inside": "http://localhost/admin"},
        robots="User-agent: *\nDisallow: /private/\n",
    )
    async with website(fixture) as served:
        yield served


async def crawl(
    site: Site, crawler_options: dict[str, float] | None = None, **plan: object
) -> tuple[list[PageData], list[str]]:
    pages, problems = await crawl_noting(site, crawler_options, plan=plan)
    return pages, [p.text for p in problems]


async def crawl_noting(
    site: Site,
    crawler_options: dict[str, float] | None = None,
    *,
    plan: dict[str, object] | None = None,
    fetch_timeout: float = 15.0,
    on_each_page: Callable[[PageData], None] = lambda page: None,
) -> tuple[list[PageData], list[Problem]]:
    """The crawl of ``site`` with every problem as the crawler reported it."""
    pages: list[PageData] = []
    problems: list[Problem] = []

    async def on_page(page: PageData) -> None:
        pages.append(page)
        on_each_page(page)

    async def on_problem(problem: Problem) -> None:
        problems.append(problem)

    async def never() -> bool:
        return False

    async with httpx.AsyncClient(trust_env=False) as client:
        fetcher = SafeFetcher(
            client=client, allowed_hosts=frozenset({"127.0.0.1"}), timeout_seconds=fetch_timeout
        )
        options = {"delay_seconds": 0.0, "retry_base_seconds": 0.01} | (crawler_options or {})
        crawler = Crawler(fetcher, user_agent="BAI-Mining/1", **options)  # type: ignore[arg-type]
        settings = {"urls": (f"{site.base}/",), "same_site": True, "max_pages": 20, "max_depth": 2}
        await crawler.run(
            Plan(**(settings | (plan or {}))),  # type: ignore[arg-type]  # the test overrides fields
            on_page=on_page,
            on_problem=on_problem,
            should_stop=never,
        )
    return pages, problems


async def test_the_site_is_crawled_same_site_within_depth_obeying_robots(site: Site) -> None:
    pages, problems = await crawl(site)

    paths = {page.url.removeprefix(site.base) for page in pages}
    assert paths == {"/", "/about", "/contact", "/deeper"}
    assert "/private/prices" not in site.requested  # robots.txt said no
    assert "/deepest" not in site.requested  # three links deep
    assert any("robots.txt" in p for p in problems)


async def test_a_redirect_to_an_internal_address_is_refused(site: Site) -> None:
    _, problems = await crawl(site)

    assert any("go-inside" in p and "localhost" in p for p in problems)


async def test_the_pages_give_the_expected_contacts(site: Site) -> None:
    pages, _ = await crawl(site)

    emails = {e for page in pages for e in page.emails}
    phones = {p for page in pages for p in page.phones}
    assert emails == {"info@acme.example", "hello@acme.example", "sales@acme.example"}
    assert phones == {"+34912345678"}


async def test_max_pages_stops_the_crawl(site: Site) -> None:
    pages, _ = await crawl(site, max_pages=2)

    assert len(pages) == 2


async def test_an_unreachable_start_url_fails_that_url_not_the_crawl(site: Site) -> None:
    pages, problems = await crawl(site, urls=("http://127.0.0.1:9/", f"{site.base}/"))

    assert pages
    assert any("127.0.0.1" in p for p in problems)


async def test_a_page_that_fails_for_a_while_is_tried_again(site: Site) -> None:
    site.failures["/about"] = [503, 502]

    pages, problems = await crawl(site)

    assert site.requested.count("/about") == 3
    assert "/about" in {page.url.removeprefix(site.base) for page in pages}
    assert not any("/about" in p for p in problems)


async def test_a_page_that_keeps_failing_fails_that_page_after_the_retries(site: Site) -> None:
    site.failures["/about"] = [503, 503, 503, 503]

    pages, problems = await crawl(site)

    assert site.requested.count("/about") == 3  # the first try and two retries
    assert any("/about" in p and "503" in p for p in problems)
    assert "/contact" in {page.url.removeprefix(site.base) for page in pages}


async def test_a_client_error_is_not_tried_again(site: Site) -> None:
    site.failures["/about"] = [404, 404]

    _, problems = await crawl(site)

    assert site.requested.count("/about") == 1
    assert any("/about" in p and "404" in p for p in problems)


async def test_one_host_gets_one_request_at_a_time_by_default(site: Site) -> None:
    site.delay = 0.05

    pages, _ = await crawl(site, {"concurrency": 4})

    assert len(pages) == 4
    assert site.most_at_once == 1


async def test_a_host_may_be_given_more_requests_at_once(site: Site) -> None:
    site.delay = 0.1

    pages, _ = await crawl(site, {"concurrency": 4, "host_concurrency": 2})

    assert len(pages) == 4
    assert site.most_at_once == 2


async def test_requests_to_a_host_are_spaced_by_the_delay(site: Site) -> None:
    await crawl(site, {"delay_seconds": 0.2, "concurrency": 4, "host_concurrency": 4})

    arrivals = sorted(arrived for _, arrived, _ in site.spans)
    assert len(arrivals) == 6  # robots.txt, four pages and the redirect that is refused
    # Each request may leave no sooner than 0.2 s after the one before it (a busy machine
    # can only make the first one later, which shortens what is measured a little).
    assert arrivals[-1] - arrivals[0] >= 0.8


async def test_two_sites_are_crawled_side_by_side(site: Site) -> None:
    other = Site(pages={"/": "<html><body>hola@other.example</body></html>"}, delay=0.3)
    site.delay = 0.3
    async with website(other):
        pages, _ = await crawl(site, {"concurrency": 4}, urls=(f"{site.base}/", f"{other.base}/"))

    assert {p.url for p in pages} >= {f"{site.base}/", f"{other.base}/"}
    assert site.most_at_once == other.most_at_once == 1  # each site: one at a time
    page_there = next(span for span in other.spans if span[0] == "/")
    overlapping = [s for s in site.spans if s[1] < page_there[2] and page_there[1] < s[2]]
    assert overlapping, "the other site's page was fetched while this one's were not"


# ---- hostile sites -------------------------------------------------------------------------
async def crawl_hostile(
    base: str,
    options: dict[str, float] | None = None,
    *,
    fetch_timeout: float = 30.0,
    **plan: object,
) -> tuple[list[PageData], list[Problem]]:
    return await crawl_noting(
        Site(base=base),
        {"retries": 0} | (options or {}),
        fetch_timeout=fetch_timeout,
        plan={"urls": (f"{base}/",)} | plan,
    )


async def test_malformed_links_are_skipped_and_noted_not_the_crawl(site: Site) -> None:
    site.pages["/"] = HOME.replace(
        "</body>",
        '<a href="http://x:99999/">a</a> <a href="http://127.0.0.1:70000/about">b</a></body>',
    )

    pages, problems = await crawl_noting(site)

    assert "/about" in {page.url.removeprefix(site.base) for page in pages}
    [note] = [p for p in problems if "malformed" in p.text]
    assert note.text.endswith("2 malformed link(s) skipped")
    assert (note.error, note.pages) == (False, 0)


async def test_a_malformed_start_url_is_reported_and_the_others_crawled(site: Site) -> None:
    pages, problems = await crawl(site, urls=("http://x:99999/", f"{site.base}/"))

    assert pages
    assert "http://x:99999/: not a URL that can be fetched" in problems


async def test_a_malformed_retry_after_fails_that_url_and_costs_its_fetch() -> None:
    async with hostile_site() as base:
        pages, problems = await crawl_hostile(base, max_depth=0, urls=(f"{base}/busy",))

    assert pages == []
    [problem] = problems
    assert "/busy" in problem.text
    assert (problem.error, problem.pages) == (True, 1)


async def test_a_tarpit_ends_at_the_fetch_timeout_and_costs_a_page() -> None:
    async with hostile_site() as base:
        _, problems = await crawl_hostile(base, fetch_timeout=1.0, urls=(f"{base}/tarpit",))

    [problem] = problems
    assert "/tarpit" in problem.text
    assert problem.pages == 1


async def test_the_deadline_stops_the_crawl_and_charges_the_fetches_it_cut_off() -> None:
    async with hostile_site() as base:
        pages, problems = await crawl_hostile(base, {"host_concurrency": 4}, deadline_seconds=2.0)

    assert f"{base}/" in {page.url for page in pages}
    [stopped] = [p for p in problems if "time limit" in p.text]
    assert stopped.error
    # Home, the bomb, the bad Retry-After and the tarpit (cut off, or after the bomb if
    # the bomb was still arriving): each request that went out costs one page.
    assert sum(p.pages for p in problems) + len(pages) == 4
    assert stopped.pages >= 1  # at least the tarpit was still running


def _of_the_crawler(task: asyncio.Task[object]) -> bool:
    """Whether ``task`` runs the crawler's code and has not finished."""
    code = getattr(task.get_coro(), "cr_code", None)
    return not task.done() and code is not None and code.co_filename == crawler_module.__file__


async def test_a_crawl_that_fails_cancels_its_other_fetches(site: Site) -> None:
    other = Site(pages={f"/{n}": "<html><body>x</body></html>" for n in range(20)}, delay=0.3)
    other.pages["/"] = "".join(f'<a href="/{n}">{n}</a>' for n in range(20))

    def fail_on_the_first_site(page: PageData) -> None:
        if page.url.startswith(site.base):
            raise RuntimeError("the database went away")

    async with website(other):
        before = asyncio.all_tasks()
        with pytest.raises(ExceptionGroup):
            await crawl_noting(
                site,
                {"concurrency": 4},
                on_each_page=fail_on_the_first_site,
                plan={"urls": (f"{other.base}/", f"{site.base}/")},
            )
        # No fetch of the crawl is left to run on: nothing else can be requested from now.
        assert [t for t in asyncio.all_tasks() - before if _of_the_crawler(t)] == []
        async with asyncio.timeout(5):  # a request already on its way is still answered
            while other.at_once:
                await asyncio.sleep(0.02)

    assert len(other.requested) < 21
