"""Billing's domain logic: the credit ledger, the plan catalogue, Stripe's stored events."""
