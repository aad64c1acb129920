"""Leads are merged by email, phone and domain, keeping every page they came from."""

from mining.service.leads import LeadBook


def add(book: LeadBook, page: str, **found: tuple[str, ...]) -> None:
    book.add(
        page=page,
        organisation=None,
        emails=found.get("emails", ()),
        phones=found.get("phones", ()),
        socials=found.get("socials", ()),
        addresses=found.get("addresses", ()),
    )


def test_pages_of_one_site_make_one_lead_with_every_page() -> None:
    book = LeadBook()
    add(book, "https://acme.example/", emails=("info@acme.example",))
    add(book, "https://www.acme.example/contact", phones=("+34912345678",))

    [lead] = book.leads
    assert lead.domain == "acme.example"
    assert lead.emails == ["info@acme.example"]
    assert lead.phones == ["+34912345678"]
    assert lead.pages == ["https://acme.example/", "https://www.acme.example/contact"]


def test_two_sites_sharing_an_email_are_one_lead() -> None:
    book = LeadBook()
    add(book, "https://acme.example/", emails=("sales@acme.example",))
    add(
        book,
        "https://acme-shop.example/",
        emails=("sales@acme.example",),
        phones=("+441234567890",),
    )

    [lead] = book.leads
    assert lead.phones == ["+441234567890"]


def test_pages_without_contact_data_make_no_lead() -> None:
    book = LeadBook()
    add(book, "https://empty.example/")

    assert book.leads == []


def test_different_organisations_stay_apart() -> None:
    book = LeadBook()
    add(book, "https://a.example/", emails=("a@a.example",))
    add(book, "https://b.example/", emails=("b@b.example",))

    assert [lead.domain for lead in book.leads] == ["a.example", "b.example"]
