"""Billing's calls out to other systems (Stripe's API)."""
