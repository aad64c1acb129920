"""Billing: plans, Stripe, subscriptions, the credit ledger and quotas."""
