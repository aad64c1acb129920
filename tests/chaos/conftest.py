"""Storms through the edge of the running system (issue 14): the integration suite's
fixtures, reused as they are. ``edge`` is a client of the session's stack through Traefik,
and every storm also fails if NATS refused a service anything meanwhile.

The storms run in ``make test`` with the rest of ``tests/`` (``make storms`` runs them
alone and shows their tables); ``make test-containers`` runs only ``tests/integration``.
"""

from ..integration.conftest import Account, edge, no_nats_permission_violations, sign_up

__all__ = ["Account", "edge", "no_nats_permission_violations", "sign_up"]
