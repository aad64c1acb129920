"""A workflow's page, checked whole and normalised (``mining.service.pages``): what is kept, and the
reason given for what is not."""

from typing import Any

import pytest

from mining.service.pages import PageRejected, read_page, region_of


def page(*items: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"job_id": "ext_abcdefgh", "page": 1, "items": list(items), **more}


def test_an_item_is_normalised() -> None:
    read = read_page(
        page(
            {
                "organisation": "  Acme Coffee ",
                "website": "www.acme.example/madrid",
                "emails": ["Info@Acme.Example", "info@acme.example", ""],
                "phones": ["912 345 678", "+44 20 7946 0958"],
                "socials": ["https://www.instagram.com/acmecoffee/", "https://acme.example/blog"],
                "addresses": [" Calle Mayor 1, Madrid "],
                "data": {"rating": 4.5, "reviews": 120},
            },
            final=True,
        ),
        region="ES",
    )

    assert (read.number, read.final) == (1, True)
    [item] = read.items
    assert item.organisation == "Acme Coffee"
    assert item.domain == "acme.example"
    assert item.emails == ("info@acme.example",)
    assert item.phones == ("+34912345678", "+442079460958")
    assert item.socials == ("https://instagram.com/acmecoffee", "https://acme.example/blog")
    assert item.addresses == ("Calle Mayor 1, Madrid",)
    assert item.source == "n8n:page:1"
    assert item.data == {"rating": 4.5, "reviews": 120}


def test_an_items_source_url_is_where_it_came_from() -> None:
    read = read_page(
        page({"organisation": "Acme", "source_url": "https://maps.example/place/1"}), region=None
    )

    assert read.items[0].source == "https://maps.example/place/1"


def test_a_website_that_is_a_social_profile_is_a_social_not_a_domain() -> None:
    read = read_page(
        page({"organisation": "Acme", "website": "https://facebook.com/acmecoffee"}), region=None
    )

    assert (read.items[0].domain, read.items[0].socials) == (
        None,
        ("https://facebook.com/acmecoffee",),
    )


def test_a_final_page_may_carry_no_items() -> None:
    read = read_page({"job_id": "ext_abcdefgh", "page": 4, "final": True}, region=None)

    assert (read.number, read.final, read.items) == (4, True, ())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"items": []}, "page: Field required"),
        ({"page": 0}, "page: Input should be greater than or equal to 1"),
        ({"page": "2"}, "page: Input should be a valid integer"),
        ({"page": True}, "page: Input should be a valid integer"),
        ({"page": 1.0}, "page: Input should be a valid integer"),
        ({"page": 1, "items": {"organisation": "Acme"}}, "items: Input should be a valid list"),
        ({"page": 1, "final": "yes"}, "final: Input should be a valid boolean"),
        ({"page": 1, "next": 2}, "next: Extra inputs are not permitted"),
        (
            page({"organisation": "A"}, {"emails": [""], "organisation": " "}),
            "items[1]: needs at least one of emails, phones, website or organisation",
        ),
        (
            page({"organisation": "A"}, {"organisation": "B"}, {"emails": ["x", "no-at.example"]}),
            "items[2].emails[0]: not an email address (and 1 more)",
        ),
        (page({"phones": ["call us"]}), "items[0].phones[0]: not a phone number"),
        (page({"website": "ftp://acme.example"}), "items[0].website: not an http(s) URL"),
        (page({"organisation": "A", "socials": ["@acme"]}), "items[0].socials[0]: not an http"),
        (page({"organisation": "A", "email": "a@acme.example"}), "items[0].email: Extra inputs"),
        (page({"organisation": 42}), "items[0].organisation: Input should be a valid string"),
        (page({"organisation": "A", "data": {"emails": []}}), "'emails' is a lead field"),
        (page({"organisation": "A", "data": {"blob": "x" * 9000}}), "at most 8192 bytes"),
        (page({"organisation": "A" * 301}), "items[0].organisation: String should have at most"),
        (page({"organisation": "Acme\x00"}), "contains NUL characters"),
        (page(*[{"organisation": "A"}] * 501), "items: List should have at most 500 items"),
        (page({"organisation": "A", "emails": ["a@acme.example"] * 51}), "at most 50 items"),
    ],
    ids=[
        "no-page",
        "page-zero",
        "page-as-text",
        "page-as-bool",
        "page-as-float",
        "items-not-a-list",
        "final-not-a-bool",
        "unknown-field",
        "item-with-nothing",
        "bad-email",
        "bad-phone",
        "bad-website",
        "bad-social",
        "unknown-item-field",
        "organisation-not-text",
        "data-shadowing-a-field",
        "data-too-big",
        "organisation-too-long",
        "nul",
        "too-many-items",
        "too-many-emails",
    ],
)
def test_a_malformed_page_is_rejected_naming_what_is_wrong(
    payload: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PageRejected) as rejected:
        read_page(payload, region=None)

    assert reason in str(rejected.value)


def test_phones_are_read_in_the_region_the_params_name() -> None:
    item = {"organisation": "Acme", "phones": ["020 7946 0958"]}

    british = read_page(page(item), region=region_of({"country": "gb"}))
    unknown = read_page(page(item), region=region_of({"country": "Narnia"}))

    assert british.items[0].phones == ("+442079460958",)
    assert unknown.items[0].phones == ("02079460958",)  # its digits, as the crawler keeps them
