"""Stripe events for tests, shaped as Stripe sends them (API version 2025-03-31 and later:
invoice lines name their price under ``pricing.price_details``, the subscription under
``parent.subscription_details``), and signed with the ``stripe`` library's own code."""

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import stripe

_counter = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_test{next(_counter):06d}{int(time.time() * 1000) % 10**9}"


def signed(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, str]:
    """The raw body and its ``Stripe-Signature`` header, as Stripe would send them."""
    raw = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(raw, secret, timestamp)
    return raw.encode(), header


def event(
    kind: str, obj: dict[str, Any], *, created: int, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or _id("evt"),
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


@dataclass
class Customer:
    """One workspace's customer and its subscription, making events in Stripe's shapes."""

    tenant: UUID
    price: str
    customer: str = field(default_factory=lambda: _id("cus"))
    subscription: str = field(default_factory=lambda: _id("sub"))
    start: int = 1_798_761_600  # 2027-01-01T00:00:00Z

    def checkout_completed(self, *, created: int, plan: str = "growth") -> dict[str, Any]:
        return event(
            "checkout.session.completed",
            {
                "id": _id("cs"),
                "object": "checkout.session",
                "mode": "subscription",
                "status": "complete",
                "payment_status": "paid",
                "client_reference_id": str(self.tenant),
                "customer": self.customer,
                "subscription": self.subscription,
                "metadata": {"tenant_id": str(self.tenant), "plan": plan},
            },
            created=created,
        )

    def subscription_event(
        self,
        kind: str,
        *,
        created: int,
        status: str = "active",
        price: str | None = None,
        period: int = 0,
        cancel_at_period_end: bool = False,
    ) -> dict[str, Any]:
        start = self.start + period * 30 * 86_400
        item = {
            "id": _id("si"),
            "object": "subscription_item",
            "price": {
                "id": price or self.price,
                "object": "price",
                "recurring": {"interval": "month"},
            },
            "quantity": 1,
            "current_period_start": start,
            "current_period_end": start + 30 * 86_400,
        }
        return event(
            f"customer.subscription.{kind}",
            {
                "id": self.subscription,
                "object": "subscription",
                "customer": self.customer,
                "status": status,
                "cancel_at_period_end": cancel_at_period_end,
                "metadata": {"tenant_id": str(self.tenant)},
                "items": {"object": "list", "data": [item]},
            },
            created=created,
        )

    def invoice(
        self,
        kind: str,
        *,
        created: int,
        period: int = 0,
        amount: int = 4900,
        price: str | None = None,
    ) -> dict[str, Any]:
        start = self.start + period * 30 * 86_400
        invoice_id = f"in_{self.subscription}_{period}"
        return event(
            kind,
            {
                "id": invoice_id,
                "object": "invoice",
                "customer": self.customer,
                "status": "paid" if kind == "invoice.paid" else "open",
                "amount_due": amount,
                "amount_paid": amount if kind == "invoice.paid" else 0,
                "currency": "eur",
                "metadata": {},
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {
                        "subscription": self.subscription,
                        "metadata": {"tenant_id": str(self.tenant)},
                    },
                },
                "lines": {
                    "object": "list",
                    "data": [
                        {
                            "id": _id("il"),
                            "object": "line_item",
                            "amount": amount,
                            "period": {"start": start, "end": start + 30 * 86_400},
                            "pricing": {
                                "type": "price_details",
                                "price_details": {
                                    "price": price or self.price,
                                    "product": "prod_x",
                                },
                            },
                        }
                    ],
                },
                "hosted_invoice_url": f"https://invoice.stripe.test/{invoice_id}",
            },
            created=created,
        )

    def invoice_payment(self, invoice_id: str, *, created: int) -> dict[str, Any]:
        """``invoice_payment.paid``: which payment intent paid the invoice."""
        return event(
            "invoice_payment.paid",
            {
                "id": f"inpay_{invoice_id}",
                "object": "invoice_payment",
                "invoice": invoice_id,
                "amount_paid": 4900,
                "amount_requested": 4900,
                "currency": "eur",
                "is_default": True,
                "status": "paid",
                "payment": {"type": "payment_intent", "payment_intent": f"pi_{invoice_id}"},
            },
            created=created,
        )

    def refund(
        self,
        invoice_id: str,
        *,
        created: int,
        amount: int = 4900,
        refunded: int = 4900,
        names_invoice: bool = False,
    ) -> dict[str, Any]:
        """``charge.refunded`` as current API versions send it: the charge names its
        payment intent, not its invoice (``names_invoice``: as versions before 2025-03-31)."""
        charge: dict[str, Any] = {
            "id": f"ch_{invoice_id}",
            "object": "charge",
            "customer": self.customer,
            "payment_intent": f"pi_{invoice_id}",
            "amount": amount,
            "amount_refunded": refunded,
            "currency": "eur",
            "refunded": refunded >= amount,
        }
        if names_invoice:
            charge["invoice"] = invoice_id
        return event("charge.refunded", charge, created=created)
