"""Keys derived from a service's one secret setting, one per purpose.

A service holds a single ``secret_key``; each use (signing review links, encrypting a
tenant's webhook secrets, ...) gets its own key, HMAC-SHA256(secret, purpose), so a key
leaked from one use opens nothing else and rotating the setting rotates them all.
"""

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr


def derive_key(secret: SecretStr, purpose: str) -> bytes:
    """32 bytes for ``purpose``, derived from ``secret``."""
    return hmac.new(secret.get_secret_value().encode(), purpose.encode(), hashlib.sha256).digest()


def fernet_for(secret: SecretStr, purpose: str) -> Fernet:
    """Authenticated encryption at rest for values the service must read back."""
    return Fernet(base64.urlsafe_b64encode(derive_key(secret, purpose)))


def read_secret(box: Fernet, token: bytes | None) -> str | None:
    """The secret ``box`` encrypted into ``token``; None when there is none or it cannot be
    read (the service's key changed since), which callers report rather than raise."""
    if not token:
        return None
    try:
        return box.decrypt(token).decode()
    except (InvalidToken, UnicodeDecodeError):
        return None
