"""Storms and chaos through the edge of the running system (issue 14).

The storms reuse the integration suite's fixtures as they are: ``edge`` is a client of the
session's stack through Traefik, and every storm also fails if NATS refused a service
anything meanwhile. The chaos suite (``test_faults_during_real_work``) starts a replicated
stack of its own, since it kills and restarts its processes.

Both run in ``make test`` with the rest of ``tests/`` (``make storms`` and ``make chaos``
run them alone and show their tables); ``make test-containers`` runs only
``tests/integration``.
"""

from ..integration.conftest import Account, edge, no_nats_permission_violations, sign_up

__all__ = ["Account", "edge", "no_nats_permission_violations", "sign_up"]
