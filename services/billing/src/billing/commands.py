"""Operator commands of billing: ``python -m billing <command>``."""

import asyncio

from rich.console import Console
from rich.table import Table

from bai_platform.db import Database
from billing.service.stripe_events import process_pending
from billing.settings import BillingSettings
from billing.worker import rules_of


def replay_stripe_events(limit: int = 1000) -> None:
    """Process stored Stripe events not handled yet, failed ones included (after a fix)."""
    settings = BillingSettings()
    done = asyncio.run(_replay(settings, limit))
    table = Table("event", "type", "outcome")
    for event_id, kind, outcome in done:
        table.add_row(event_id, kind, outcome)
    Console().print(table)
    Console().print(f"{len(done)} stored event(s) processed")


async def _replay(settings: BillingSettings, limit: int) -> list[tuple[str, str, str]]:
    database = Database(settings)
    try:
        return await process_pending(
            database,
            rules_of(settings),
            max_attempts=settings.event_max_attempts,
            wait_seconds=settings.event_wait_seconds,
            limit=limit,
            retry_all=True,
        )
    finally:
        await database.dispose()
