import base64
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from bai_platform.pagination import InvalidCursor, decode_cursor, encode_cursor


def test_cursor_round_trips_its_position() -> None:
    position = (datetime(2026, 11, 29, 10, 30, tzinfo=UTC), uuid4())
    assert decode_cursor(encode_cursor(*position)) == position


def _cursor(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-base64!",
        "W10",
        "WyJ4IiwgInkiXQ",
        _cursor(["2026-01-01T00:00:00+00:00", 5]),  # id not a string
        _cursor(["0001-01-01T00:00:00+14:00", str(uuid4())]),  # before year 1 in UTC
        _cursor(["2026-01-01T00:00:00", str(uuid4())]),  # no offset
    ],
)
def test_tampered_cursor_is_a_bad_request(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
