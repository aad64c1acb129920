"""Scopes: what a credential may reach.

The rule lives in ``bai_platform.access`` so that the gateway and every service apply the
same one copy; the scopes an API key may be given are re-exported here for the schemas.
"""

from bai_platform.access import KEY_SCOPES

__all__ = ["KEY_SCOPES"]
