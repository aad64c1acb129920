"""The worker's loop over stored Stripe events: one transaction each, and when to try again."""

from datetime import timedelta

import stripe
import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.db import Database
from bai_platform.errors import database_trouble
from billing.models import StripeEvent
from billing.service.stripe_events.common import NotYet, Rules, now
from billing.service.stripe_events.handlers import HANDLERS

log = structlog.get_logger(__name__)

ERROR_LIMIT = 500
WAITING_BACKOFF_CEILING = 60  # seconds between two tries of a waiting event, at most
STRIPE_RETRY_SECONDS = 3 * 24 * 3600  # how long Stripe retries a delivery


async def process_pending(
    db: Database,
    rules: Rules,
    *,
    max_attempts: int,
    wait_seconds: float = STRIPE_RETRY_SECONDS,
    limit: int = 100,
    retry_all: bool = False,
) -> list[tuple[str, str, str]]:
    """Process stored events whose turn has come; (id, type, outcome) of each."""
    done: list[tuple[str, str, str]] = []
    for _ in range(limit):
        async with db.transaction() as session:
            query = select(StripeEvent).where(col(StripeEvent.processed_at).is_(None))
            if retry_all:  # the operator's replay: everything not processed, each once
                if done:
                    query = query.where(col(StripeEvent.id).not_in([seen for seen, _, _ in done]))
            else:
                query = query.where(
                    col(StripeEvent.next_attempt_at) <= now(),
                    or_(
                        col(StripeEvent.outcome) == "waiting",
                        col(StripeEvent.attempts) < max_attempts,
                    ),
                )
            stored = await session.scalar(
                query.order_by(col(StripeEvent.created), col(StripeEvent.received_at))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if stored is None:
                break
            outcome = await _process(
                session, stored, rules, max_attempts=max_attempts, wait_seconds=wait_seconds
            )
            done.append((stored.id, stored.type, outcome))
    return done


async def _process(
    session: AsyncSession,
    stored: StripeEvent,
    rules: Rules,
    *,
    max_attempts: int,
    wait_seconds: float,
) -> str:
    handler = HANDLERS.get(stored.type)
    stored.attempts += 1
    if handler is None:
        stored.outcome, stored.processed_at = "ignored", now()
        return "ignored"
    try:
        event = stripe.Event.construct_from(stored.payload, key=None)
        async with session.begin_nested():  # a failure undoes the effects, not the bookkeeping
            await handler(session, event, rules)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, NotYet) else f"{type(exc).__name__}: {exc}"
        stored.last_error = reason[:ERROR_LIMIT]
        waits = _waits(exc)
        outcome = _try_again(
            stored, waits=waits, wait_seconds=wait_seconds, max_attempts=max_attempts
        )
        if not waits:
            log.exception("stripe_event_failed", event_id=stored.id, type=stored.type)
        return outcome
    stored.outcome, stored.processed_at, stored.last_error = "processed", now(), None
    # What waited may have waited for this one: its turn comes at once. Rows another worker
    # holds are skipped (it is trying them now; waiting for its lock could close a cycle).
    waiting = (
        select(col(StripeEvent.id))
        .where(col(StripeEvent.outcome) == "waiting", col(StripeEvent.processed_at).is_(None))
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        update(StripeEvent)
        .where(col(StripeEvent.id).in_(waiting.scalar_subquery()))
        .values(next_attempt_at=now())
    )
    return "processed"


def _waits(exc: Exception) -> bool:
    """Whether the event only has to wait: for what it needs (``NotYet``), or for a
    conflict with another worker (deadlock, serialization, a lock wait that timed out) or a
    database away to pass."""
    return isinstance(exc, NotYet) or database_trouble(exc) is not None


def _try_again(stored: StripeEvent, *, waits: bool, wait_seconds: float, max_attempts: int) -> str:
    """When the event is tried next, or that it gave up (``failed``); its outcome."""
    waited = (now() - stored.received_at).total_seconds()
    outcome = "failed" if stored.attempts >= max_attempts else "retrying"
    delay = min(2 ** (stored.attempts - 1), 3600)
    if waits and waited < wait_seconds:
        outcome, delay = "waiting", min(delay, WAITING_BACKOFF_CEILING)
    stored.outcome = outcome
    stored.next_attempt_at = now() + timedelta(seconds=delay)
    return outcome
