"""The callback signature n8n workflows send (REFERENCE.md, "n8n").

``X-BAI-Timestamp: <unix seconds>`` and ``X-BAI-Signature: v1=<hex>`` where the hex is
HMAC-SHA256(secret, f"{timestamp}.{raw_body}"). Several ``v1=`` values, comma-separated,
may come while a secret is being rolled: any match is enough. Only ``v1`` counts. The
timestamp must be within ``tolerance`` seconds of now, both ways. Comparisons are in
constant time, on the raw bytes, never on re-serialised JSON.
"""

import hashlib
import hmac

DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The callback is not signed as it must be; the reason is safe to show."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-BAI-Signature`` value for ``body`` (what dispatchers and tests send)."""
    return f"v1={_digest(secret, str(timestamp), body)}"


def verify_signature(
    *,
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    if not secret:
        raise SignatureError("no signing secret is configured for this job")  # never verify
    if not timestamp or not signature:
        raise SignatureError("X-BAI-Timestamp and X-BAI-Signature are required")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"X-BAI-Timestamp is not within {tolerance} s of now")
    expected = _digest(secret, timestamp, body)
    candidates = [v.strip()[3:] for v in signature.split(",") if v.strip().startswith("v1=")]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("X-BAI-Signature does not match the body")


def verify_secret_header(*, secret: str, presented: str | None) -> None:
    """The original system's shared-secret header, for engines configured to send it."""
    if not secret or not presented or not hmac.compare_digest(secret, presented):
        raise SignatureError("X-BAI-Secret does not match")


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
