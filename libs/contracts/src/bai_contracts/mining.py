"""Facts mining publishes."""

from typing import ClassVar

from bai_contracts._base import EventContract


class ExtractionProgressed(EventContract):
    """An extraction job moved on: a page fetched, or its state changed (live events)."""

    subject: ClassVar[str] = "bai.mining.job.progressed.v1"

    job_id: str
    state: str
    pages_fetched: int
    items_found: int
    errors: int
