"""Leads from pages: one per organisation, merged when they share an email, a phone or a
domain, keeping every page each came from."""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class LeadDraft:
    key: str
    domain: str | None = None
    organisation: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    socials: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def worth_keeping(self) -> bool:
        return bool(self.emails or self.phones or self.socials or self.addresses)


def domain_of(url: str) -> str | None:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.") or None


class LeadBook:
    """Every lead of one job, with indexes by email, phone and domain."""

    def __init__(self) -> None:
        self._leads: list[LeadDraft] = []
        self._by: dict[str, LeadDraft] = {}

    def add(
        self,
        *,
        page: str,
        organisation: str | None,
        emails: tuple[str, ...],
        phones: tuple[str, ...],
        socials: tuple[str, ...],
        addresses: tuple[str, ...],
        title: str | None = None,
        description: str | None = None,
    ) -> None:
        domain = domain_of(page)
        keys = [f"email:{e}" for e in emails] + [f"phone:{p}" for p in phones]
        keys += [f"domain:{domain}"] if domain else []
        lead = next((self._by[k] for k in keys if k in self._by), None)
        if lead is None:
            lead = LeadDraft(key=keys[0] if keys else f"page:{page}", domain=domain)
            self._leads.append(lead)
        _merge(lead.emails, emails)
        _merge(lead.phones, phones)
        _merge(lead.socials, socials)
        _merge(lead.addresses, addresses)
        _merge(lead.pages, (page,))
        lead.organisation = lead.organisation or organisation
        if title and "title" not in lead.data:
            lead.data["title"] = title
        if description and "description" not in lead.data:
            lead.data["description"] = description
        for key in keys:
            self._by.setdefault(key, lead)

    @property
    def leads(self) -> list[LeadDraft]:
        return [lead for lead in self._leads if lead.worth_keeping()]


def _merge(into: list[str], values: tuple[str, ...]) -> None:
    for value in values:
        if value not in into:
            into.append(value)
