from datetime import UTC, datetime
from uuid import uuid4

import pytest

from bai_platform.pagination import InvalidCursor, decode_cursor, encode_cursor


def test_cursor_round_trips_its_position() -> None:
    position = (datetime(2026, 11, 29, 10, 30, tzinfo=UTC), uuid4())
    assert decode_cursor(encode_cursor(*position)) == position


@pytest.mark.parametrize("cursor", ["", "not-base64!", "W10", "WyJ4IiwgInkiXQ"])
def test_tampered_cursor_is_a_bad_request(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
