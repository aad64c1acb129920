"""Lead and business data from one HTML page: pure, no network, no I/O.

``extract(html, url=..., default_region=...)`` parses the page with selectolax's lexbor
parser (``LexborHTMLParser``; selectolax 1.0 removed the old Modest ``HTMLParser``) and
returns a frozen ``PageData``. The rules:

- Limits: at most 5,000,000 characters of HTML are parsed, cut earlier where more than
  500 elements would be open (a cheap tag count; lexbor slows with depth squared), and
  at most 2 MiB of visible text is scanned; scanning stops there. Every list is capped
  (see the ``_MAX_*`` constants): at most 5,000 ``<a href>`` values and 200 values of a
  JSON-LD key are read, 50 ``<address>`` elements of at most 1,000 nodes each, and phone
  matching gives up after a bounded number of candidates and of matches.
- Time: linear in the size of the page, whatever the page holds (crawled pages are
  hostile input, and the crawler reads them on a worker thread all the same). Every
  pattern is written so that no two parts can trade characters (possessive quantifiers
  where they could), a text node finds its block through a memo, and nested elements
  are never read again for each of their ancestors.
- Visible text: text nodes in document order; a line break separates text of different
  block elements (and ``<br>``), so inline markup (``<a>``, ``<span>``, ...) does not
  split a number or an address. ``<script>``, ``<style>`` and ``<template>`` text is
  never scanned for emails or phones.
- Page order: emails, phones and socials keep the order in which they appear (JSON-LD
  first, then links and text by their position in the visible text); duplicates keep
  their first place.
- Title: ``<title>``, else ``og:title``. Description: ``<meta name="description">``,
  else ``og:description``. Whitespace is collapsed; an empty value is ``None``.
- JSON-LD: every ``<script type="application/ld+json">`` is read as JSON; invalid JSON
  is skipped. An object, a list, and ``@graph`` (flattened) all yield objects; at most
  20 are kept in ``structured``. Objects whose ``@type`` is one of ``_ORG_TYPES``
  (Organization, LocalBusiness, Corporation, Store, Restaurant, CafeOrCoffeeShop,
  ProfessionalService) give the organisation name (the first one wins, else
  ``og:site_name``), ``email``, ``telephone``, ``address`` and ``sameAs`` (socials).
- Emails: from ``mailto:`` links (the query is dropped, percent-escapes decoded, a
  comma-separated list split) and from visible text, including ``name [at] domain
  [dot] com``, ``name(at)domain(dot)com`` (any bracket, any case) and, only when the last
  label is a known TLD (``_BARE_WORD_TLDS`` or a two-letter one), ``name at domain dot
  com``. Entities such as ``&#64;`` are decoded by the parser. Reversed forms are out of
  scope. Addresses are validated by a regex, lowercased, and dropped when the last label
  is a file extension (``logo@2x.png``).
- Phones: ``tel:`` links and JSON-LD ``telephone`` values go through
  ``phonenumbers.parse``; visible text goes through ``phonenumbers.PhoneNumberMatcher``
  (valid numbers only). A valid number is written in E.164; an unparseable or invalid
  ``tel:`` value keeps its digits (and a leading ``+``) when it has 5 to 20 digits. The
  region is ``default_region``, else guessed from the URL's country-code TLD (``.es`` ->
  ES, ``.co.uk`` -> GB; generic-use ones like ``.io`` or ``.co`` are ignored); with no
  region only numbers written with ``+`` are found.
- Socials: ``<a href>`` and JSON-LD ``sameAs`` URLs on facebook.com, instagram.com,
  linkedin.com (``/company/...`` and ``/in/...`` only), x.com, twitter.com, tiktok.com
  (``/@...``) and youtube.com (``/@...``, ``/channel/``, ``/c/``, ``/user/``), reached
  directly or through ``www.``, ``m.``, ``mobile.`` or a two-letter subdomain. Share,
  intent and other non-profile paths (``_SOCIAL_BLOCKED``) are dropped. A profile is
  written ``https://<domain>/<path>`` without query, fragment or trailing slash.
- Addresses: JSON-LD ``PostalAddress`` (in organisations and on its own) as
  ``streetAddress, postalCode addressLocality, addressCountry`` (a plain string address
  is kept as it is), then each ``<address>`` element's lines joined with ", ".
- Links: every ``<a href>`` resolved against ``url`` (``urljoin``; ``<base>`` is not
  read), http(s) only, fragment removed, deduplicated, at most 500.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import phonenumbers
from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = ["PageData", "extract"]

_MAX_HTML_CHARS = 5_000_000
_MAX_OPEN_ELEMENTS = 500  # lexbor's parse time grows with depth squared
_MAX_TEXT_CHARS = 2 * 1024 * 1024
_MAX_JSONLD_SCRIPTS = 50
_MAX_JSONLD_CHARS = 1_000_000
_MAX_JSONLD_DEPTH = 8
_MAX_STRUCTURED = 20
_MAX_LINKS = 500
_MAX_ITEMS = 50  # emails, phones, socials, addresses
_MAX_VALUES = 200  # values read under one JSON-LD key (telephone, email, sameAs, @type...)
_MAX_PHONE_TRIES = 2_000  # invalid candidates (the matcher's own budget)
_MAX_PHONE_MATCHES = 500  # valid ones: a page repeating one number is read this far
_MAX_ANCHORS = 5_000  # <a href> values read (links, mailto:, tel:, socials)
_MAX_FIELD_CHARS = 1_000
_MAX_ADDRESS_NODES = 1_000  # nodes read inside one <address>

_ORG_TYPES = frozenset(
    {
        "Organization",
        "LocalBusiness",
        "Corporation",
        "Store",
        "Restaurant",
        "CafeOrCoffeeShop",
        "ProfessionalService",
    }
)
_NON_NESTING_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr", "p", "li", "dt", "dd", "option", "optgroup", "tr", "td"}
    | {"th", "thead", "tbody", "tfoot", "colgroup", "caption", "rb", "rp", "rt", "rtc"}
    | {"html", "head", "body"}
)
# Possessive quantifiers: the name and the attributes never trade characters, so a tag
# that is never closed (``<a`` and two million letters) costs one pass, not a square.
_TAG_RE = re.compile(r"<(/?+)([a-z][a-z0-9:-]*+)[^<>]*+>", re.I)
_SKIPPED_TEXT_PARENTS = frozenset({"script", "style", "template"})
_INLINE_TAGS = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd"}
    | {"label", "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time"}
    | {"u", "var", "wbr"}
)
_IMAGE_LIKE_TLDS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif", "tiff", "css"}
    | {"js", "mp4", "webm", "woff", "woff2"}
)
_BARE_WORD_TLDS = frozenset(
    {"com", "net", "org", "info", "biz", "edu", "gov", "eu", "cat", "online", "shop"}
)
_GENERIC_CCTLDS = frozenset(
    {"ac", "ai", "cc", "co", "fm", "gg", "im", "io", "la", "ly", "me", "sh", "so", "to", "tv", "ws"}
)
_SOCIAL_DOMAINS = (
    "facebook.com",
    "instagram.com",
    "linkedin.com",
    "x.com",
    "twitter.com",
    "tiktok.com",
    "youtube.com",
)
_SOCIAL_BLOCKED: dict[str, frozenset[str]] = {
    "facebook.com": frozenset(
        {"sharer", "sharer.php", "share", "share.php", "dialog", "plugins", "tr", "login"}
        | {"login.php", "home.php", "profile.php", "l.php"}
    ),
    "instagram.com": frozenset({"p", "reel", "reels", "explore", "stories", "accounts"}),
    "x.com": frozenset({"intent", "share", "home", "search", "hashtag", "i", "login"}),
    "twitter.com": frozenset({"intent", "share", "home", "search", "hashtag", "i", "login"}),
}
_SOCIAL_PREFIX_RE = re.compile(r"^(?:www|m|mobile|[a-z]{2})\.")

_LOCAL = r"[a-z0-9._%+-]{1,64}"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_OPEN, _CLOSE = r"[\[\(\{<]", r"[\]\)\}>]"
_AT = rf"(?:@|\s*{_OPEN}\s*(?:at|@)\s*{_CLOSE}\s*)"
_DOT = rf"(?:\.|\s*{_OPEN}\s*(?:dot|\.)\s*{_CLOSE}\s*)"
_EMAIL_RE = re.compile(
    rf"(?<![a-z0-9._%+-])({_LOCAL}){_AT}({_LABEL}(?:{_DOT}{_LABEL})+)(?![a-z0-9-])", re.I
)
_BARE_EMAIL_RE = re.compile(
    rf"(?<![a-z0-9._%+-])({_LOCAL})\s+at\s+({_LABEL}(?:\s+dot\s+{_LABEL})+)(?![a-z0-9-])", re.I
)
_DOT_SPLIT_RE = re.compile(rf"{_DOT}|\s+dot\s+", re.I)
_VALID_EMAIL_RE = re.compile(
    rf"(?=.{{6,254}}$)(?!\.)(?!.*\.\.)[a-z0-9._%+-]{{1,64}}(?<!\.)@{_LABEL}(?:\.{_LABEL})*"
    r"\.[a-z]{2,24}"
)
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class PageData:
    """What one page says about the business behind it (see the module rules)."""

    url: str
    title: str | None
    description: str | None
    organisation: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    socials: tuple[str, ...]
    addresses: tuple[str, ...]
    structured: tuple[dict[str, Any], ...]
    links: tuple[str, ...]


@dataclass(slots=True)
class _Scan:
    """The visible text and the ``<a href>`` values, each with its offset in the text."""

    text: str = ""
    anchors: list[tuple[int, str]] = field(default_factory=list)


def extract(html: str, *, url: str, default_region: str | None = None) -> PageData:
    """Extract lead and business data from ``html`` fetched from ``url``."""
    tree = LexborHTMLParser(_bounded_html(html))
    region = default_region.upper() if default_region else guess_region(url)
    structured = _structured(tree)
    orgs = [obj for obj in structured if _types(obj) & _ORG_TYPES]
    meta = _meta(tree)
    scan = _scan(tree.root)
    return PageData(
        url=url,
        title=_clean(_node_text(tree.css_first("title"))) or meta.get("og:title"),
        description=meta.get("description") or meta.get("og:description"),
        organisation=_organisation(orgs) or meta.get("og:site_name"),
        emails=_emails(orgs, scan.anchors, scan.text),
        phones=_phones(orgs, scan.anchors, scan.text, region),
        socials=_socials(orgs, scan.anchors, url),
        addresses=_addresses(structured, orgs, tree),
        structured=tuple(structured),
        links=_links(scan.anchors, url),
    )


def guess_region(url: str) -> str | None:
    """The phone region of the URL's country-code TLD (``.co.uk`` -> GB), else ``None``."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    tld = host.rsplit(".", 1)[-1]
    if len(tld) != 2 or not tld.isalpha() or tld in _GENERIC_CCTLDS or "." not in host:
        return None
    region = "GB" if tld == "uk" else tld.upper()
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def normalise_email(value: str) -> str | None:
    """One given address, lowercased, if it is valid by the rules above; else ``None``."""
    return _valid_email(value)


def normalise_phone(value: str, region: str | None) -> str | None:
    """One given number in E.164 when valid (else its digits, as ``tel:`` links); or ``None``."""
    return _phone(value, region.upper() if region else None)


def normalise_social(value: str) -> str | None:
    """The canonical profile URL when ``value`` is one of a supported network; else ``None``."""
    return _social(value)


# --- text and metadata -------------------------------------------------------------------


def _bounded_html(html: str) -> str:
    """``html`` capped in size, and cut where more than ``_MAX_OPEN_ELEMENTS`` are open."""
    html = html[:_MAX_HTML_CHARS]
    if html.count("<") <= _MAX_OPEN_ELEMENTS:
        return html
    depth = 0
    for match in _TAG_RE.finditer(html):
        name = match.group(2).lower()
        if name in _NON_NESTING_TAGS or match.group(0).endswith("/>"):
            continue
        depth = max(depth - 1, 0) if match.group(1) else depth + 1
        if depth > _MAX_OPEN_ELEMENTS:
            return html[: match.start()]
    return html


def _scan(
    root: LexborNode | None, *, max_chars: int = _MAX_TEXT_CHARS, max_nodes: int | None = None
) -> _Scan:
    """Visible text (block-separated, capped) and anchors, in one document-order pass.

    Stops at ``max_chars`` of text or after ``max_nodes`` nodes (``None``: every node).
    """
    scan = _Scan()
    if root is None:
        return scan
    parts: list[str] = []
    size, last_block = 0, -1
    blocks: dict[int, int] = {}
    for seen, node in enumerate(root.traverse(include_text=True)):
        if max_nodes is not None and seen >= max_nodes:
            break
        if node.is_text_node:
            parent = node.parent
            if parent is None or parent.tag in _SKIPPED_TEXT_PARENTS:
                continue
            block = _block_id(parent, blocks)
            piece = node.text_content or ""
            if block != last_block:
                piece, last_block = "\n" + piece, block
            parts.append(piece)
            size += len(piece)
            if size >= max_chars:
                break
        elif node.tag == "br":
            parts.append("\n")
            size += 1
        elif node.tag == "a" and len(scan.anchors) < _MAX_ANCHORS and (href := _href(node)):
            scan.anchors.append((size, href))
    scan.text = "".join(parts)[:max_chars]
    return scan


def _href(node: LexborNode) -> str | None:
    return node.attributes.get("href")


def _block_id(node: LexborNode, known: dict[int, int]) -> int:
    """Identity of the nearest ancestor-or-self that is not an inline element.

    ``known`` remembers the answer for every inline element walked through, so text under
    500 nested ``<span>`` costs one walk up, not one per text node.
    """
    walked: list[int] = []
    current: LexborNode | None = node
    block = 0
    while current is not None:
        if (hit := known.get(current.mem_id)) is not None:
            block = hit
            break
        if current.tag not in _INLINE_TAGS:
            block = current.mem_id
            break
        walked.append(current.mem_id)
        current = current.parent
    for mem_id in walked:
        known[mem_id] = block
    return block


def _node_text(node: LexborNode | None) -> str | None:
    return node.text(deep=True) if node is not None else None


def _clean(value: object) -> str | None:
    """Whitespace collapsed and capped; ``None`` when not a string or empty."""
    if not isinstance(value, str):
        return None
    return _SPACE_RE.sub(" ", value).strip()[:_MAX_FIELD_CHARS] or None


def _meta(tree: LexborHTMLParser) -> dict[str, str]:
    """``<meta>`` contents by lowercased ``name`` or ``property``; the first one wins."""
    found: dict[str, str] = {}
    for node in tree.css("meta"):
        attrs = node.attributes
        key = (attrs.get("name") or attrs.get("property") or "").strip().lower()
        content = _clean(attrs.get("content"))
        if key and content and key not in found:
            found[key] = content
    return found


# --- JSON-LD -------------------------------------------------------------------------------


def _structured(tree: LexborHTMLParser) -> list[dict[str, Any]]:
    """The JSON-LD objects of the page, ``@graph`` flattened, invalid scripts skipped."""
    found: list[dict[str, Any]] = []
    scripts = [
        node
        for node in tree.css("script")
        if (node.attributes.get("type") or "").strip().lower().startswith("application/ld+json")
    ]
    for node in scripts[:_MAX_JSONLD_SCRIPTS]:
        text = node.text(deep=True)
        if len(text) > _MAX_JSONLD_CHARS:
            continue
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            continue
        _flatten(data, found, 0)
        if len(found) >= _MAX_STRUCTURED:
            break
    return found[:_MAX_STRUCTURED]


def _flatten(data: object, out: list[dict[str, Any]], depth: int) -> None:
    if depth > _MAX_JSONLD_DEPTH or len(out) >= _MAX_STRUCTURED:
        return
    if isinstance(data, list):
        for item in data:
            _flatten(item, out, depth + 1)
    elif isinstance(data, dict):
        graph = data.get("@graph")
        if isinstance(graph, (list, dict)):
            _flatten(graph, out, depth + 1)
        else:
            out.append(data)


def _types(obj: dict[str, Any]) -> set[str]:
    """``@type`` as a set of bare names (``schema:Store`` and URLs reduced to ``Store``)."""
    values = _values(obj, "@type")
    return {re.split(r"[/:#]", v)[-1] for v in values if isinstance(v, str)}


def _values(obj: dict[str, Any], key: str) -> list[Any]:
    """The values under ``key`` (the first ``_MAX_VALUES``: a page may list a million)."""
    raw = obj.get(key)
    if raw is None:
        return []
    return raw[:_MAX_VALUES] if isinstance(raw, list) else [raw]


def _organisation(orgs: list[dict[str, Any]]) -> str | None:
    return next((name for org in orgs if (name := _clean(org.get("name")))), None)


# --- emails --------------------------------------------------------------------------------


def _emails(orgs: list[dict[str, Any]], hrefs: list[tuple[int, str]], text: str) -> tuple[str, ...]:
    found: list[tuple[int, str]] = []
    for org in orgs:
        found += [(-1, e) for v in _values(org, "email") for e in _mailto(v)]
    for pos, href in hrefs:
        if href.strip().lower().startswith("mailto:"):
            found += [(pos, e) for e in _mailto(href)]
    found += _text_emails(text)
    return _ordered(found)


def _mailto(value: object) -> list[str]:
    """Addresses of a ``mailto:`` URL or a plain address; query dropped, escapes decoded."""
    if not isinstance(value, str):
        return []
    value = value.strip()
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:") :]
    addresses = unquote(value.split("?", 1)[0]).split(",")
    return [e for a in addresses if (e := _valid_email(a))]


def _text_emails(text: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for match in _EMAIL_RE.finditer(text):
        email = _valid_email(_join_email(match))
        if email:
            found.append((match.start(), email))
    for match in _BARE_EMAIL_RE.finditer(text):
        email = _valid_email(_join_email(match))
        tld = email.rsplit(".", 1)[-1] if email else ""
        if email and (tld in _BARE_WORD_TLDS or len(tld) == 2):
            found.append((match.start(), email))
    return found


def _join_email(match: re.Match[str]) -> str:
    return match.group(1) + "@" + ".".join(_DOT_SPLIT_RE.split(match.group(2)))


def _valid_email(candidate: str) -> str | None:
    email = candidate.strip().lower()
    if not _VALID_EMAIL_RE.fullmatch(email):
        return None
    return None if email.rsplit(".", 1)[-1] in _IMAGE_LIKE_TLDS else email


# --- phones --------------------------------------------------------------------------------


def _phones(
    orgs: list[dict[str, Any]], hrefs: list[tuple[int, str]], text: str, region: str | None
) -> tuple[str, ...]:
    found: list[tuple[int, str]] = []
    for org in orgs:
        found += [(-1, p) for v in _values(org, "telephone") if (p := _phone(v, region))]
    for pos, href in hrefs:
        if href.strip().lower().startswith("tel:") and (phone := _phone(href, region)):
            found.append((pos, phone))
    found += _text_phones(text, region)
    return _ordered(found)


def _phone(value: object, region: str | None) -> str | None:
    """E.164 for a valid number, else its digits (a leading ``+`` kept), else ``None``."""
    if not isinstance(value, str):
        return None
    raw = unquote(value.strip())
    if raw.lower().startswith("tel:"):
        raw = raw[len("tel:") :]
    raw = raw[:64]
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is not None and phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    digits = re.sub(r"\D", "", raw.split(";", 1)[0])
    if not 5 <= len(digits) <= 20:
        return None
    return ("+" if raw.lstrip().startswith("+") else "") + digits


def _text_phones(text: str, region: str | None) -> list[tuple[int, str]]:
    matcher = phonenumbers.PhoneNumberMatcher(text, region, max_tries=_MAX_PHONE_TRIES)
    e164 = phonenumbers.PhoneNumberFormat.E164
    matches = itertools.islice(matcher, _MAX_PHONE_MATCHES)
    return [(m.start, phonenumbers.format_number(m.number, e164)) for m in matches]


# --- socials and links ---------------------------------------------------------------------


def _socials(orgs: list[dict[str, Any]], hrefs: list[tuple[int, str]], url: str) -> tuple[str, ...]:
    found: list[tuple[int, str]] = []
    for org in orgs:
        found += [(-1, s) for v in _values(org, "sameAs") if (s := _social(v))]
    for pos, href in hrefs:
        absolute = _absolute(href, url)
        if absolute and (social := _social(absolute)):
            found.append((pos, social))
    return _ordered(found)


def _social(value: object) -> str | None:
    """The canonical profile URL of a supported network, or ``None``."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    domain = _social_domain(host)
    path = parts.path.rstrip("/")
    segments = [s for s in path.split("/") if s]
    if domain is None or not segments or not _is_profile(domain, segments):
        return None
    return f"https://{domain}{path}"


def _social_domain(host: str) -> str | None:
    if host in _SOCIAL_DOMAINS:
        return host
    bare = _SOCIAL_PREFIX_RE.sub("", host, count=1)
    return bare if bare in _SOCIAL_DOMAINS else None


def _is_profile(domain: str, segments: list[str]) -> bool:
    first = segments[0].lower()
    if domain == "linkedin.com":
        return first in ("company", "in") and len(segments) >= 2
    if domain == "tiktok.com":
        return first.startswith("@") and len(first) > 1
    if domain == "youtube.com":
        return (first.startswith("@") and len(first) > 1) or (
            first in ("channel", "c", "user") and len(segments) >= 2
        )
    return first not in _SOCIAL_BLOCKED.get(domain, frozenset())


def _absolute(href: str, base: str) -> str | None:
    """``href`` resolved against ``base``, fragment removed; ``None`` unless http(s)."""
    try:
        joined, _fragment = urldefrag(urljoin(base, href.strip()))
        parts = urlsplit(joined)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return joined


def _links(hrefs: list[tuple[int, str]], url: str) -> tuple[str, ...]:
    links = (link for _pos, href in hrefs if (link := _absolute(href, url)))
    return tuple(_dedupe(links, _MAX_LINKS))


# --- addresses -----------------------------------------------------------------------------


def _addresses(
    structured: list[dict[str, Any]], orgs: list[dict[str, Any]], tree: LexborHTMLParser
) -> tuple[str, ...]:
    postal = [obj for obj in structured if "PostalAddress" in _types(obj)]
    values = [v for org in orgs for v in _values(org, "address")] + postal
    found = [a for v in values if (a := _postal_address(v))]
    elements = tree.css("address")[:_MAX_ITEMS]  # nested ones would be read again and again
    found += [a for node in elements if (a := _address_element(node))]
    return tuple(_dedupe(found, _MAX_ITEMS))


def _postal_address(value: object) -> str | None:
    """``streetAddress, postalCode addressLocality, addressCountry``; a string as it is."""
    if isinstance(value, str):
        return _clean(value)
    if not isinstance(value, dict):
        return None
    country = value.get("addressCountry")
    if isinstance(country, dict):
        country = country.get("name")
    locality = " ".join(
        p for k in ("postalCode", "addressLocality") if (p := _scalar(value.get(k)))
    )
    parts = (_scalar(value.get("streetAddress")), locality, _scalar(country))
    return _clean(", ".join(p for p in parts if p))


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return _clean(value)


def _address_element(node: LexborNode) -> str | None:
    text = _scan(node, max_chars=_MAX_FIELD_CHARS, max_nodes=_MAX_ADDRESS_NODES).text
    lines = (_clean(line) for line in text.split("\n"))
    return _clean(", ".join(line for line in lines if line))


# --- helpers -------------------------------------------------------------------------------


def _ordered(found: list[tuple[int, str]]) -> tuple[str, ...]:
    """Values sorted by page position (stable), deduplicated, capped."""
    return tuple(_dedupe((v for _pos, v in sorted(found, key=lambda f: f[0])), _MAX_ITEMS))


def _dedupe(values: Iterable[str], limit: int) -> Iterator[str]:
    seen: set[str] = set()
    for value in values:
        if value not in seen:
            seen.add(value)
            yield value
            if len(seen) >= limit:
                return
