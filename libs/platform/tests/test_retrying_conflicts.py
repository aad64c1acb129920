"""``retrying_conflicts``: work PostgreSQL ended for a deadlock or a serialization conflict
is done again in a fresh savepoint; other failures, and the last conflict, are raised."""

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError

from bai_platform.db import retrying_conflicts

from .conftest import Sandbox

pytestmark = pytest.mark.integration


def _fail_with(sqlstate: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '{sqlstate}'; END $$"


async def _effects(sandbox: Sandbox) -> list[str]:
    async with sandbox.db.transaction() as session:
        rows = await session.scalars(select(sandbox.effects.c.event_id).order_by("id"))
        return list(rows)


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_a_conflict_is_tried_again_and_only_the_last_attempt_counts(
    sandbox: Sandbox, sqlstate: str
) -> None:
    attempts: list[int] = []

    async def work() -> int:
        attempts.append(len(attempts) + 1)
        await session.execute(insert(sandbox.effects).values(event_id=f"try-{len(attempts)}"))
        if len(attempts) < 3:
            await session.execute(text(_fail_with(sqlstate)))
        return len(attempts)

    async with sandbox.db.transaction() as session:
        await session.execute(insert(sandbox.effects).values(event_id="before"))
        assert await retrying_conflicts(session, work, attempts=3) == 3
    assert attempts == [1, 2, 3]
    assert await _effects(sandbox) == ["before", "try-3"]


async def test_the_last_conflict_is_raised_and_other_errors_are_not_retried(
    sandbox: Sandbox,
) -> None:
    tries = 0

    async def fails(sqlstate: str) -> None:
        nonlocal tries
        tries += 1
        await session.execute(text(_fail_with(sqlstate)))

    async with sandbox.db.transaction() as session:
        with pytest.raises(DBAPIError) as conflict:
            await retrying_conflicts(session, lambda: fails("40P01"), attempts=2)
        assert getattr(conflict.value.orig, "sqlstate", None) == "40P01"
        assert tries == 2
        tries = 0
        with pytest.raises(DBAPIError):  # a unique violation: the same work fails the same way
            await retrying_conflicts(session, lambda: fails("23505"), attempts=3)
        assert tries == 1
        # The session's transaction is still usable: only the savepoints were rolled back.
        assert await session.scalar(select(func.count()).select_from(sandbox.effects)) == 0
