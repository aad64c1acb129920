"""Processing stored Stripe events: subscriptions, paid invoices, refunds and notices.

The worker takes stored events not yet processed, oldest ``created`` first, one
transaction each (the event's effects and its ``processed_at`` commit together, so a crash
repeats nothing and loses nothing). Stripe delivers at least once and in no particular
order; each effect is safe either way:

- **subscriptions** (``customer.subscription.created|updated|deleted|paused|resumed``):
  the row keeps the ``created`` time of the event it came from, and an older event never
  overwrites a newer one (an ``updated`` that arrives before its ``created`` wins; a
  ``deleted`` is final even against another event of the same second). When the
  workspace's plan in force changes, ``bai.billing.subscription.changed.v1`` tells the
  gateway (rate-limit tiers); the plan in force is that of the workspace's active
  (or trialing, or past due) subscription, else ``none``.
- **invoice.paid** grants the plan's monthly credits once, keyed by the invoice id, usable
  until the end of the period paid for plus the grace (see ``billing.service.credits``).
- **charge.refunded** takes back the refunded share of what that invoice granted. API
  versions from 2025-03-31 no longer name the invoice on a charge: ``invoice_payment.paid``
  tells which payment intent (or charge) paid which invoice, and a refund that comes
  before that link waits in ``pending_refunds`` and applies when it comes. A refund and
  its link handled at once by two workers meet: each first takes a lock on the payment's
  ids (charge, payment intent), so the second sees what the first committed.
- **checkout.session.completed** links the Stripe customer to the workspace.
- ``invoice.payment_failed``, ``invoice.payment_action_required``, ``invoice.upcoming``,
  ``customer.subscription.trial_will_end`` and ``charge.dispute.created`` become
  ``bai.billing.notice.v1`` for the workspace's people (live events).
- any other type is stored and marked ``ignored``.

An event that cannot be applied yet (say an invoice whose customer billing does not know
until the checkout event is processed), or that met another worker's lock (a deadlock, a
serialization failure), is ``waiting``: it is tried again with a backoff of
at most a minute, and at once whenever another event was applied (it may have been the one
it waited for). Stripe retries a delivery for three days, so it keeps waiting that long
(``event_wait_seconds``) before it gives up. An event whose handler fails for any other
reason is ``retrying`` with a growing backoff, up to ``event_max_attempts``. An event that
gave up waits for ``python -m billing replay-stripe-events``.

The package, by event family: ``subscriptions`` (and checkout), ``invoices``, ``charges``
(refunds and disputes), ``payments`` (what a refund and its invoice share), ``notices``;
``handlers`` maps each type to its handler, ``processing`` is the worker's loop, and
``common`` what they all need.
"""

from billing.service.stripe_events.common import NotYet, Rules
from billing.service.stripe_events.handlers import HANDLERS
from billing.service.stripe_events.processing import process_pending
from billing.service.stripe_events.subscriptions import IN_FORCE, in_force

__all__ = ["HANDLERS", "IN_FORCE", "NotYet", "Rules", "in_force", "process_pending"]
