"""Which handler applies each Stripe event type (any other type is stored and ``ignored``)."""

import stripe

from billing.service.stripe_events.charges import charge_refunded, dispute
from billing.service.stripe_events.common import Handler, field, money, timestamp
from billing.service.stripe_events.invoices import invoice_paid, invoice_payment_paid
from billing.service.stripe_events.notices import noticed
from billing.service.stripe_events.subscriptions import checkout_completed, subscription

HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_completed,
    "customer.subscription.created": subscription,
    "customer.subscription.updated": subscription,
    "customer.subscription.deleted": subscription,
    "customer.subscription.paused": subscription,
    "customer.subscription.resumed": subscription,
    "customer.subscription.trial_will_end": noticed(
        "trial_will_end",
        lambda o: f"The trial ends on {timestamp(field(o, 'trial_end')) or 'its last day'}",
        about=stripe.Subscription,
    ),
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": noticed(
        "payment_failed",
        lambda o: (
            f"A payment of {money(o, 'amount_due')} failed; Stripe will try again. "
            "Update the card in the billing portal."
        ),
    ),
    "invoice.payment_action_required": noticed(
        "payment_action_required",
        lambda o: (
            f"A payment of {money(o, 'amount_due')} needs your confirmation: "
            f"{field(o, 'hosted_invoice_url') or 'see the billing portal'}"
        ),
    ),
    "invoice.upcoming": noticed(
        "invoice_upcoming", lambda o: f"The next invoice, {money(o, 'amount_due')}, is coming"
    ),
    "invoice_payment.paid": invoice_payment_paid,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute,
}
