"""Scopes: what a credential may reach, decided once at the edge.

People carry ``api``: everything their role allows. API keys carry service scopes,
``<service>:read`` (GET, HEAD, OPTIONS) and ``<service>:write`` (the rest), and reach only
service routes: a key never manages keys, members or sessions.
"""

FULL_ACCESS = "api"
SCOPED_SERVICES = ("planner", "creator", "mining", "billing")
KEY_SCOPES = frozenset(
    f"{service}:{access}" for service in SCOPED_SERVICES for access in ("read", "write")
)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs, or None for routes outside the services (``/v1/auth``...)."""
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[1] != "v1" or parts[2] not in SCOPED_SERVICES:
        return None
    access = "read" if method.upper() in READ_METHODS else "write"
    return f"{parts[2]}:{access}"


def allows(granted: frozenset[str], needed: str | None) -> bool:
    if FULL_ACCESS in granted:
        return True
    return needed is not None and needed in granted
