"""Opaque keyset cursors: stable under inserts, no OFFSET scans."""

import base64
import binascii
import json
from datetime import UTC, datetime
from uuid import UUID

from bai_platform.errors import BadRequest

MAX_PAGE_SIZE = 200


class InvalidCursor(BadRequest):
    code = "invalid_cursor"


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor names; a tampered cursor is a 400, not a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(created_at, str) or not isinstance(row_id, str):
            raise TypeError("a cursor holds two strings")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("a cursor's time carries its offset")
        return moment.astimezone(UTC), UUID(row_id)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise InvalidCursor("the cursor is not valid") from exc
