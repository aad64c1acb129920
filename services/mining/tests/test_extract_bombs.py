"""Hostile pages of the largest size the crawler reads (2 MiB) are extracted in linear time.

Each page is built to make one rule of the extractor backtrack or repeat its work: an
unclosed tag after many closing ones (the tag counter), hundreds of nested inline or
``<address>`` elements (the text walk), and for every pattern that reads text (emails in
all their spellings, phones, links) the input that would make it go quadratic. A
regression does not hang the suite: the timeout fails the test.
"""

import html
import json

import pytest

from mining.service.extract import PageData, extract

SIZE = 2 * 1024 * 1024  # what the crawler reads of one page (crawl_max_bytes)
# Far above what linear work takes on a busy machine, far below what a square takes.
pytestmark = pytest.mark.timeout(20)


def _text_page(text: str) -> str:
    """``text`` as the visible text of a page (escaped, so ``<`` stays text)."""
    return f"<html><body><p>{html.escape(text)}</p></body></html>"


def _repeat(piece: str) -> str:
    return piece * (SIZE // len(piece))


def test_an_unclosed_tag_after_many_closing_tags_is_read_in_one_pass() -> None:
    page = "<p>first@acme.example</p>" + "</p>" * 501 + "<a" + "b" * SIZE

    assert extract(page, url="https://a.example/").emails == ("first@acme.example",)


def test_text_under_hundreds_of_nested_inline_elements_is_read_in_one_pass() -> None:
    page = "<span>" * 499 + _repeat("x<br>") + " last@acme.example"

    assert isinstance(extract(page, url="https://a.example/"), PageData)


def test_hundreds_of_nested_addresses_are_each_read_a_bounded_way() -> None:
    page = "<address>" * 400 + _repeat("Calle Mayor 1<br>")

    addresses = extract(page, url="https://a.example/").addresses

    assert 0 < len(addresses) <= 50
    assert addresses[0].startswith("Calle Mayor 1, Calle Mayor 1")


@pytest.mark.parametrize(
    "text",
    [
        "a@b" + " " * SIZE,  # a dot that never comes, after whitespace
        "a" + " " * SIZE + "x",  # an [at] that never comes
        "a@" + _repeat("b.") + "-",  # a domain that ends badly, many labels long
        "a@b" + _repeat(" [dot] b") + "-",
        _repeat("a@"),
        _repeat("a" * 64 + " "),  # longest local parts, none followed by an at
        _repeat("a ["),
        _repeat("a [ at ] b [ dot ]"),
        "a at b" + _repeat(" dot b") + "-",
        _repeat("a at "),
        "a at b" + " " * SIZE,
        _repeat("a (at) b (dot) "),
    ],
    ids=lambda text: repr(text[:12]),
)
def test_obfuscated_email_patterns_read_hostile_text_in_linear_time(text: str) -> None:
    page = extract(_text_page(text), url="https://a.example/")

    assert len(page.emails) <= 50


@pytest.mark.parametrize(
    "text",
    [_repeat("1 "), _repeat("+34 912 345 678 "), "9" * SIZE, _repeat("(1) "), _repeat("+1-")],
    ids=lambda text: repr(text[:12]),
)
def test_phone_matching_reads_hostile_text_in_bounded_time(text: str) -> None:
    page = extract(_text_page(text), url="https://a.example/", default_region="ES")

    assert len(page.phones) <= 50


@pytest.mark.parametrize(
    "piece",
    [
        "<a href='tel:+34912345678'>x</a>",
        "<a href='mailto:a@b.example'>x</a>",
        "<a href='/same'>x</a>",
        "<a href='https://www.instagram.com/acme/'>x</a>",
    ],
)
def test_a_page_of_nothing_but_links_is_read_in_bounded_time(piece: str) -> None:
    page = extract(_repeat(piece), url="https://a.example/")

    assert len(page.links) <= 500


def test_a_mailto_link_with_a_huge_address_is_dropped() -> None:
    page = extract(f"<a href='mailto:{'a' * SIZE}@b.example'>x</a>", url="https://a.example/")

    assert page.emails == ()


def test_json_ld_with_a_huge_list_of_telephones_is_read_in_bounded_time() -> None:
    org = {"@type": "Store", "telephone": ["+34 912 345 678"] * 30_000, "sameAs": ["x"] * 30_000}
    page = extract(
        f'<script type="application/ld+json">{json.dumps(org)}</script>',
        url="https://a.example/",
    )

    assert page.phones == ("+34912345678",)
