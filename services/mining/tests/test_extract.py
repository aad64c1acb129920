"""The pure page extractor: every field of a realistic page, and the edge cases."""

import json
import time

from mining.service.extract import PageData, extract, guess_region

URL = "https://www.acme.es/contacto/index.html"

JSON_LD = {
    "@context": "https://schema.org",
    "@type": "LocalBusiness",
    "name": "Acme Cafés S.L.",
    "telephone": "+34 911 222 333",
    "email": "mailto:Hola@Acme.example",
    "address": {
        "@type": "PostalAddress",
        "streetAddress": "Calle Mayor 1",
        "postalCode": "28013",
        "addressLocality": "Madrid",
        "addressCountry": "ES",
    },
    "sameAs": ["https://www.facebook.com/acmecafes/", "https://es.linkedin.com/company/acme"],
}

PAGE = f"""<!doctype html>
<html lang="es"><head>
  <meta charset="utf-8">
  <title>  Acme   Cafés | Contacto </title>
  <meta name="description" content="Café de especialidad en Madrid.">
  <meta property="og:description" content="Not this one.">
  <meta property="og:site_name" content="Acme OG">
  <script type="application/ld+json">{json.dumps(JSON_LD)}</script>
  <script>var hidden = "script@acme.example"; var tel = "+34 915 555 555";</script>
  <style>.x::after {{ content: "style@acme.example"; }}</style>
</head><body>
  <header><a href="/"><img src="/img/logo@2x.png" alt="Acme"></a>
    <a href="#menu">Menu</a> <a href="javascript:void(0)">Open</a></header>
  <main>
    <p>Escríbenos a info [at] acme [dot] example o a
       <a href="mailto:Ventas@Acme.example?subject=Hola%20Acme">ventas</a>.</p>
    <p>Prensa: prensa&#64;acme.example</p>
    <p>Descarga logo@2x.png para tu web.</p>
    <p>Llámanos: <a href="tel:+34-600-123-456">600 123 456</a></p>
    <p>Oficina: +34 912 345 678 (o 912 345 678 desde España).</p>
    <a href="carta.html#cafes">Carta</a>
    <a href="https://blog.acme.es/post?id=1#top">Blog</a>
    <a href="https://blog.acme.es/post?id=1">Blog again</a>
  </main>
  <footer>
    <address>Calle Mayor 1<br>28013 <span>Madrid</span></address>
    <a href="https://www.instagram.com/acmecafes/?hl=es">Instagram</a>
    <a href="https://twitter.com/AcmeCafes">Twitter</a>
    <a href="https://www.facebook.com/sharer/sharer.php?u=https://acme.es">Share</a>
    <a href="https://twitter.com/intent/tweet?text=hi">Tweet</a>
    <a href="https://www.linkedin.com/shareArticle?url=https://acme.es">Share</a>
    <a href="https://www.youtube.com/@acmecafes">YouTube</a>
  </footer>
</body></html>"""


def test_full_page_every_field() -> None:
    page = extract(PAGE, url=URL)

    assert page == PageData(
        url=URL,
        title="Acme Cafés | Contacto",
        description="Café de especialidad en Madrid.",
        organisation="Acme Cafés S.L.",
        emails=(
            "hola@acme.example",
            "info@acme.example",
            "ventas@acme.example",
            "prensa@acme.example",
        ),
        phones=("+34911222333", "+34600123456", "+34912345678"),
        socials=(
            "https://facebook.com/acmecafes",
            "https://linkedin.com/company/acme",
            "https://instagram.com/acmecafes",
            "https://twitter.com/AcmeCafes",
            "https://youtube.com/@acmecafes",
        ),
        addresses=("Calle Mayor 1, 28013 Madrid, ES", "Calle Mayor 1, 28013 Madrid"),
        structured=(JSON_LD,),
        links=(
            "https://www.acme.es/",
            "https://www.acme.es/contacto/index.html",
            "https://www.acme.es/contacto/carta.html",
            "https://blog.acme.es/post?id=1",
            "https://www.instagram.com/acmecafes/?hl=es",
            "https://twitter.com/AcmeCafes",
            "https://www.facebook.com/sharer/sharer.php?u=https://acme.es",
            "https://twitter.com/intent/tweet?text=hi",
            "https://www.linkedin.com/shareArticle?url=https://acme.es",
            "https://www.youtube.com/@acmecafes",
        ),
    )


def test_invalid_json_ld_is_skipped_and_the_valid_one_kept() -> None:
    html = """<script type="application/ld+json">{"@type": "Organization", "name": </script>
    <script type="application/ld+json">{"@type": "Organization", "name": "Good Co"}</script>"""

    page = extract(html, url="https://good.example/")

    assert page.structured == ({"@type": "Organization", "name": "Good Co"},)
    assert page.organisation == "Good Co"


def test_graph_is_flattened_and_org_fields_read_from_it() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebSite", "name": "Site"},
            {
                "@type": ["Organization", "Corporation"],
                "name": "Graph Corp",
                "telephone": "+49 30 901820",
                "email": "kontakt@graph.example",
                "sameAs": "https://x.com/graphcorp/",
            },
            {"@type": "PostalAddress", "streetAddress": "Unter den Linden 1", "postalCode": 10117},
        ],
    }
    html = f'<script type="application/ld+json">{json.dumps(graph)}</script>'

    page = extract(html, url="https://graph.example/")

    assert page.structured == tuple(graph["@graph"])
    assert page.organisation == "Graph Corp"
    assert page.emails == ("kontakt@graph.example",)
    assert page.phones == ("+4930901820",)
    assert page.socials == ("https://x.com/graphcorp",)
    assert page.addresses == ("Unter den Linden 1, 10117",)


def test_og_site_name_is_the_fallback_organisation() -> None:
    html = '<meta property="og:site_name" content="OG Shop"><meta property="og:title" content="T">'

    page = extract(html, url="https://shop.example/")

    assert (page.organisation, page.title, page.description) == ("OG Shop", "T", None)


def test_page_with_no_data_gives_empty_fields() -> None:
    page = extract("<html><body><p>Nothing here.</p></body></html>", url="https://a.example/")

    assert page == PageData(
        url="https://a.example/",
        title=None,
        description=None,
        organisation=None,
        emails=(),
        phones=(),
        socials=(),
        addresses=(),
        structured=(),
        links=(),
    )


def test_empty_document() -> None:
    assert extract("", url="https://a.example/").emails == ()


def test_obfuscated_email_forms() -> None:
    html = """<p>a(at)one(dot)com</p><p>b [AT] two [DOT] org</p><p>c {at} three.net</p>
    <p>write to d at four dot com today</p><p>look at this dot thing</p>
    <p>e@five.example.com.</p>"""

    page = extract(html, url="https://a.example/")

    assert page.emails == (
        "a@one.com",
        "b@two.org",
        "c@three.net",
        "d@four.com",
        "e@five.example.com",
    )


def test_mailto_with_several_addresses_and_image_like_false_positives() -> None:
    html = """<a href="MAILTO:one@x.example,two%40x.example?cc=no@x.example">mail</a>
    <p>icon@3x.webp sprite@2x.jpg</p>"""

    assert extract(html, url="https://x.example/").emails == ("one@x.example", "two@x.example")


def test_text_inside_script_and_style_is_ignored() -> None:
    html = """<script>var e = "a@b.example"; var p = "+34 912 345 678";</script>
    <style>/* c@d.example */</style><p>ok</p>"""

    page = extract(html, url="https://a.es/")

    assert (page.emails, page.phones) == ((), ())


def test_blocks_do_not_glue_numbers_but_inline_markup_does_not_split_them() -> None:
    html = "<div>Tel <b>+34 912</b> 345 678</div><p>+34</p><p>600 123 456</p>"

    assert extract(html, url="https://a.example/").phones == ("+34912345678",)


def test_default_region_guessed_from_co_uk() -> None:
    html = "<p>Call us on 020 7946 0000.</p>"

    assert guess_region("https://shop.example.co.uk/contact") == "GB"
    assert extract(html, url="https://shop.example.co.uk/contact").phones == ("+442079460000",)


def test_explicit_region_wins_over_the_url() -> None:
    html = "<p>Call us on 020 7946 0000.</p>"

    assert extract(html, url="https://a.es/", default_region="gb").phones == ("+442079460000",)


def test_no_region_finds_only_international_numbers() -> None:
    html = "<p>Llámanos al 912 345 678.</p>"

    assert guess_region("https://acme.com/") is None
    assert guess_region("https://acme.io/") is None
    assert extract(html, url="https://acme.com/").phones == ()
    assert extract(html + "<p>+34 600 123 456</p>", url="https://acme.com/").phones == (
        "+34600123456",
    )


def test_unparseable_tel_link_keeps_its_digits() -> None:
    html = '<a href="tel:0800-ACME">x</a><a href="tel:+99 1234 5678">y</a><a href="tel:12">z</a>'

    assert extract(html, url="https://acme.com/").phones == ("+9912345678",)


def test_social_rules() -> None:
    hrefs = [
        "https://m.facebook.com/acme?ref=page",
        "https://facebook.com/",
        "https://www.facebook.com/dialog/share?app_id=1",
        "https://www.instagram.com/p/Cxyz/",
        "https://linkedin.com/in/jane-doe/",
        "https://www.linkedin.com/feed/",
        "https://www.tiktok.com/@acme?lang=es",
        "https://www.tiktok.com/tag/coffee",
        "https://www.youtube.com/watch?v=abc",
        "https://www.youtube.com/channel/UC123/",
        "https://x.com/share?url=a",
        "https://evil.example/facebook.com/acme",
        "https://notfacebook.com/acme",
    ]
    html = "".join(f'<a href="{h}">s</a>' for h in hrefs)

    assert extract(html, url="https://a.example/").socials == (
        "https://facebook.com/acme",
        "https://linkedin.com/in/jane-doe",
        "https://tiktok.com/@acme",
        "https://youtube.com/channel/UC123",
    )


def test_links_are_capped() -> None:
    html = "".join(f'<a href="/p/{i}">p</a>' for i in range(800))

    links = extract(html, url="https://a.example/").links

    assert len(links) == 500
    assert links[0] == "https://a.example/p/0"


def test_structured_is_capped() -> None:
    objects = [{"@type": "Thing", "name": str(i)} for i in range(30)]
    html = f'<script type="application/ld+json">{json.dumps(objects)}</script>'

    assert len(extract(html, url="https://a.example/").structured) == 20


def test_five_megabyte_page_returns_quickly() -> None:
    chunk = '<div><p>Lorem 1234 ipsum 555 12 34 <a href="/x">x</a> dolor@sit</p></div>\n'
    html = chunk * (5_500_000 // len(chunk))
    started = time.monotonic()

    page = extract(html, url="https://big.es/")

    assert isinstance(page, PageData)
    assert page.links == ("https://big.es/x",)
    assert time.monotonic() - started < 60


def test_deep_nesting_is_cut_instead_of_parsed() -> None:
    html = "<p>first@acme.example</p>" + "<div>" * 200_000 + "<p>late@acme.example</p>"

    assert extract(html, url="https://a.example/").emails == ("first@acme.example",)


def test_balanced_markup_is_not_cut() -> None:
    nested = "<div>" * 400 + "x" + "</div>" * 400
    html = nested * 10 + "<p>late@acme.example</p>"

    assert extract(html, url="https://a.example/").emails == ("late@acme.example",)
