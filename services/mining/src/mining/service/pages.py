"""A workflow's page callback, checked whole and normalised before anything is stored.

``read_page(payload, region=...)`` returns a ``Page`` or raises ``PageRejected`` with a
reason fit to show the workflow's author, naming the first field at fault the way a
JavaScript author would write it (``items[2].emails[0]: not an email address``).

An item has at least one of ``emails``, ``phones``, ``website`` or ``organisation``.
Emails are validated and lowercased; phones written in E.164 where they are valid numbers
(read in ``region`` when they carry no ``+``), else kept as digits; a ``website`` (with or
without ``https://``) gives the lead's domain; socials are http(s) URLs, made canonical for
the networks the crawler knows. Blank strings count as absent (an empty ``organisation``,
``""`` in a list). A ``website`` that is a social profile is kept as a social, not a
domain. ``data`` is kept as given (small JSON, names that are not
the lead's own columns). Nothing may hold NUL characters (PostgreSQL cannot store them).
"""

import json
from dataclasses import dataclass
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from mining.schemas import has_nul
from mining.service.extract import normalise_email, normalise_phone, normalise_social
from mining.service.leads import domain_of

MAX_ITEMS_PER_PAGE = 500
MAX_DATA_BYTES = 8 * 1024
# The lead's own columns (and exports' fixed ones): ``data`` may not shadow them.
RESERVED_DATA_KEYS = frozenset(
    {"organisation", "domain", "emails", "phones", "socials", "addresses", "pages"}
)


class PageRejected(ValueError):
    """The page is not taken; the reason says why (safe to show)."""


def _email(value: str) -> str:
    email = normalise_email(value)
    if email is None:
        raise ValueError("not an email address")
    return email


def _phone(value: str, info: ValidationInfo) -> str:
    region = (info.context or {}).get("region")
    phone = normalise_phone(value, region)
    if phone is None:
        raise ValueError("not a phone number")
    return phone


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    return value


def _website(value: str) -> str:
    url = _http_url(value if "://" in value else f"https://{value}")
    if len(urlsplit(url).hostname or "") > 253:
        raise ValueError("the host name is longer than DNS allows")
    return url


def _social(value: str) -> str:
    return normalise_social(_http_url(value)) or value


def _data(value: dict[str, Any]) -> dict[str, Any]:
    taken = sorted(RESERVED_DATA_KEYS & set(value))
    if taken:
        raise ValueError(f"{taken[0]!r} is a lead field, not extra data")
    try:
        raw = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise ValueError("must be plain JSON (no NaN or Infinity)") from exc
    if len(raw.encode()) > MAX_DATA_BYTES:
        raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
    return value


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _without_blanks(value: object) -> object:
    if isinstance(value, list):
        return [v for v in value if not (isinstance(v, str) and not v.strip())]
    return value


def _text(max_length: int) -> Any:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


Email = Annotated[str, _text(320), AfterValidator(_email)]
Phone = Annotated[str, _text(64), AfterValidator(_phone)]
Social = Annotated[str, _text(500), AfterValidator(_social)]
Address = Annotated[str, _text(500)]
Blank = BeforeValidator(_blank_is_none)
Blanks = BeforeValidator(_without_blanks)


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    organisation: Annotated[Annotated[str, _text(300)] | None, Blank] = None
    website: Annotated[Annotated[str, _text(2000), AfterValidator(_website)] | None, Blank] = None
    source_url: Annotated[Annotated[str, _text(2000), AfterValidator(_http_url)] | None, Blank] = (
        None
    )
    emails: Annotated[list[Email], Blanks] = Field(default_factory=list, max_length=50)
    phones: Annotated[list[Phone], Blanks] = Field(default_factory=list, max_length=50)
    socials: Annotated[list[Social], Blanks] = Field(default_factory=list, max_length=50)
    addresses: Annotated[list[Address], Blanks] = Field(default_factory=list, max_length=20)
    data: Annotated[dict[str, Any], AfterValidator(_data)] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if not (self.emails or self.phones or self.website or self.organisation):
            raise ValueError("needs at least one of emails, phones, website or organisation")
        return self


class _Page(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    job_id: str | None = None
    page: int = Field(ge=1, le=1_000_000)
    items: list[_Item] = Field(default_factory=list, max_length=MAX_ITEMS_PER_PAGE)
    final: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    """One lead as the workflow found it, normalised."""

    organisation: str | None
    domain: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    socials: tuple[str, ...]
    addresses: tuple[str, ...]
    source: str  # the item's source_url, else "n8n:page:<n>"
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    final: bool
    items: tuple[Item, ...]


def page_number(payload: dict[str, Any]) -> int | None:
    """The page number a payload claims, when it is one (to name it in a rejection)."""
    number = payload.get("page")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def region_of(params: dict[str, Any]) -> str | None:
    """The phone region a job's ``params`` name (``country``: two letters), if any."""
    country = params.get("country")
    if not isinstance(country, str) or country.upper() not in phonenumbers.SUPPORTED_REGIONS:
        return None
    return country.upper()


def read_page(payload: dict[str, Any], *, region: str | None) -> Page:
    """The page in ``payload``, checked and normalised; ``PageRejected`` says what is wrong."""
    if has_nul(payload):
        raise PageRejected("contains NUL characters, which cannot be stored")
    try:
        page = _Page.model_validate(payload, context={"region": region})
    except ValidationError as exc:
        raise PageRejected(_reason(exc)) from None
    items = tuple(_item(item, page.page) for item in page.items)
    return Page(number=page.page, final=page.final, items=items)


def _item(item: _Item, number: int) -> Item:
    # A business whose "website" is its social profile: a social, not a domain shared by all.
    profile = normalise_social(item.website) if item.website else None
    domain = domain_of(item.website) if item.website and not profile else None
    return Item(
        organisation=item.organisation,
        domain=domain,
        emails=_unique(item.emails),
        phones=_unique(item.phones),
        socials=_unique([*item.socials, *([profile] if profile else [])]),
        addresses=_unique(item.addresses),
        source=item.source_url or f"n8n:page:{number}",
        data=item.data,
    )


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where or 'the page'}: {message}{more}"
