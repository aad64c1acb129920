"""Stripe webhooks: verified on the raw body, stored by event id, acknowledged at once.

``POST /v1/billing/webhooks/stripe`` is reached without a bearer token (the edge routes it
past ForwardAuth); the ``Stripe-Signature`` header is the credential:

- the raw bytes are checked by ``stripe.Webhook.construct_event`` against each configured
  secret in turn (several while a secret is rolled); an empty secret never verifies, and
  with no secret configured every delivery is refused;
- a signature older than ``stripe_webhook_tolerance_seconds`` (300 s, Stripe's default) is
  refused, so a captured delivery cannot be replayed later;
- a verified event is stored under its id (unique) and answered ``200`` before any work:
  a redelivery only counts ``deliveries``. The worker processes stored events afterwards
  (``billing.service.stripe_events``), types billing does not handle included (stored, marked
  ``ignored``).

Refusals are problem+json ``400`` (``signature_invalid``, ``event_invalid``) and store
nothing, which makes Stripe retry: a secret fixed within Stripe's 3 days of retries loses
nothing.
"""

import json
from typing import Any

import stripe
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.app_state import settings_of
from bai_platform.db import Session
from bai_platform.errors import BadRequest
from billing.models import StripeEvent
from billing.settings import BillingSettings

router = APIRouter(prefix="/v1/billing/webhooks", tags=["billing"])


class SignatureInvalid(BadRequest):
    code = "signature_invalid"


class EventInvalid(BadRequest):
    code = "event_invalid"


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool


def verified_event(
    raw: bytes, signature: str | None, secrets: list[str], *, tolerance: int
) -> dict[str, Any]:
    """The event in ``raw`` when one of ``secrets`` signed it, else SignatureInvalid."""
    if not signature:
        raise SignatureInvalid("the Stripe-Signature header is missing")
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise SignatureInvalid("no webhook secret is configured: nothing can be verified")
    for secret in usable:
        try:
            stripe.Webhook.construct_event(raw, signature, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            continue
        except ValueError as exc:  # signed, but not JSON
            raise EventInvalid("the body is not a JSON Stripe event") from exc
        break
    else:
        raise SignatureInvalid(
            "the signature does not match the body for any configured secret, or it is "
            f"older than {tolerance} s"
        )
    event = json.loads(raw)
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("created"), int)
        and isinstance(event.get("data"), dict)
    ):
        raise EventInvalid("a Stripe event has an id, a type, a created time and data")
    return event


async def store(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Keep the event once; True when it was new."""
    statement = insert(StripeEvent).values(
        id=event["id"][:120],
        type=event["type"][:120],
        created=event["created"],
        livemode=bool(event.get("livemode", False)),
        payload=event,
        deliveries=1,
        attempts=0,
    )
    deliveries = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[col(StripeEvent.id)],
            set_={"deliveries": col(StripeEvent.deliveries) + 1},
        ).returning(col(StripeEvent.deliveries))
    )
    return deliveries == 1


@router.post("/stripe")
async def stripe_webhook(request: Request, session: Session) -> WebhookAck:
    """Stripe's deliveries (no bearer token: the signature is checked on the raw body)."""
    settings = settings_of(request, BillingSettings)
    raw = await request.body()
    event = verified_event(
        raw,
        request.headers.get("stripe-signature"),
        [secret.get_secret_value() for secret in settings.stripe_webhook_secrets],
        tolerance=settings.stripe_webhook_tolerance_seconds,
    )
    new = await store(session, event)
    return WebhookAck(received=True, duplicate=not new)
