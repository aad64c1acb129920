"""B.A.I. test support, installed with the dev dependencies only (never in an image).

- ``plugin``: the pytest plugin (the root ``conftest.py`` loads it): the session's local
  stack as fixtures, settings for a service on it, trusted test identities and clients.
- ``servers``: serve an ASGI app on 127.0.0.1 for the length of a block.
- Stand-ins that speak the real protocol: ``stripe_api`` (Stripe's API),
  ``stripe_events`` (signed Stripe webhook events), ``workflows`` (n8n workflows),
  ``sites`` (websites to crawl), ``billing`` (billing's quota questions over NATS).
"""
