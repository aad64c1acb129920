"""The credit ledger: each grant, reservation, commit and release happens exactly once,
nothing goes below zero, and concurrent reservations are exact."""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import select
from sqlmodel import col

from bai_contracts import CommitCredits, QuotaAnswer, ReleaseCredits, ReserveCredits
from bai_platform.db import Database
from billing.models import CreditGrant, LedgerEntry
from billing.service import credits


async def granted(db: Database, tenant: UUID, amount: int, reference: str = "invoice:in_1") -> bool:
    async with db.transaction() as session:
        return await credits.grant(
            session, tenant_id=tenant, kind="posts", amount=amount, reference=reference
        )


async def reserve(db: Database, tenant: UUID, reference: str, amount: int = 1) -> QuotaAnswer:
    async with db.transaction() as session:
        question = ReserveCredits(
            tenant_id=tenant, kind="posts", amount=amount, reference=reference
        )
        return await credits.reserve(session, question)


async def commit(
    db: Database, tenant: UUID, reference: str, amount: int | None = None
) -> QuotaAnswer:
    async with db.transaction() as session:
        question = CommitCredits(tenant_id=tenant, kind="posts", reference=reference, amount=amount)
        return await credits.commit(session, question)


async def release(db: Database, tenant: UUID, reference: str) -> QuotaAnswer:
    async with db.transaction() as session:
        return await credits.release(
            session, ReleaseCredits(tenant_id=tenant, kind="posts", reference=reference)
        )


async def posts_left(db: Database, tenant: UUID) -> int:
    async with db.transaction() as session:
        return (await credits.balances(session, tenant_id=tenant))["posts"]


async def ledger(db: Database, tenant: UUID) -> list[tuple[str, int, str]]:
    async with db.transaction() as session:
        query = (
            select(LedgerEntry)
            .where(col(LedgerEntry.tenant_id) == tenant)
            .order_by(col(LedgerEntry.id))
        )
        return [(e.entry, e.amount, e.reference) for e in (await session.scalars(query)).all()]


async def test_a_grant_counts_once_however_often_it_is_applied(
    billing_db: Database, tenant: UUID
) -> None:
    assert await granted(billing_db, tenant, 10)
    assert not await granted(billing_db, tenant, 10)

    assert await posts_left(billing_db, tenant) == 10
    assert await ledger(billing_db, tenant) == [("grant", 10, "invoice:in_1")]


async def test_every_kind_is_named_in_the_balances_even_when_never_granted(
    billing_db: Database, tenant: UUID
) -> None:
    async with billing_db.transaction() as session:
        assert await credits.balances(session, tenant_id=tenant) == {
            "posts": 0,
            "extraction_pages": 0,
            "chat_messages": 0,
        }


async def test_fifty_concurrent_reservations_against_ten_credits_exactly_ten_succeed(
    billing_db: Database, tenant: UUID
) -> None:
    await granted(billing_db, tenant, 10)

    answers = await asyncio.gather(*(reserve(billing_db, tenant, f"gen_{n}") for n in range(50)))

    assert sum(a.ok for a in answers) == 10
    assert {a.code for a in answers if not a.ok} == {"insufficient_credits"}
    assert await posts_left(billing_db, tenant) == 0


async def test_a_reservation_that_does_not_fit_is_refused_with_the_reason(
    billing_db: Database, tenant: UUID
) -> None:
    await granted(billing_db, tenant, 2)

    answer = await reserve(billing_db, tenant, "ext_big", amount=3)

    assert (answer.ok, answer.code) == (False, "insufficient_credits")
    assert answer.reason == "3 posts credits needed, 2 left"
    assert answer.balances["posts"] == 2
    assert await ledger(billing_db, tenant) == [("grant", 2, "invoice:in_1")]


async def test_the_same_job_reserving_twice_holds_once(billing_db: Database, tenant: UUID) -> None:
    await granted(billing_db, tenant, 5)

    first, again = (
        await reserve(billing_db, tenant, "gen_a"),
        await reserve(billing_db, tenant, "gen_a"),
    )

    assert first.ok
    assert again.ok
    assert await posts_left(billing_db, tenant) == 4


async def test_a_commit_charges_once_and_a_late_release_gives_nothing_back(
    billing_db: Database, tenant: UUID
) -> None:
    await granted(billing_db, tenant, 5)
    await reserve(billing_db, tenant, "gen_a")

    assert (await commit(billing_db, tenant, "gen_a")).ok
    again = await commit(billing_db, tenant, "gen_a")
    late = await release(billing_db, tenant, "gen_a")

    assert (again.ok, again.code) == (True, "already_committed")
    assert (late.ok, late.code) == (False, "already_committed")
    assert await posts_left(billing_db, tenant) == 4
    assert [e for e, _, _ in await ledger(billing_db, tenant)] == ["grant", "reservation", "commit"]


async def test_a_release_gives_everything_back_once(billing_db: Database, tenant: UUID) -> None:
    await granted(billing_db, tenant, 5)
    await reserve(billing_db, tenant, "gen_a", amount=2)

    await release(billing_db, tenant, "gen_a")
    await release(billing_db, tenant, "gen_a")
    late = await commit(billing_db, tenant, "gen_a")

    assert (late.ok, late.code) == (False, "already_released")
    assert await posts_left(billing_db, tenant) == 5


async def test_committing_less_than_held_gives_the_rest_back(
    billing_db: Database, tenant: UUID
) -> None:
    await granted(billing_db, tenant, 20)
    await reserve(billing_db, tenant, "ext_pages", amount=10)

    await commit(billing_db, tenant, "ext_pages", amount=3)

    assert await posts_left(billing_db, tenant) == 17
    assert ("release", 7, "ext_pages") in await ledger(billing_db, tenant)


async def test_a_commit_is_charged_to_the_grants_that_expire_soonest(
    billing_db: Database, tenant: UUID
) -> None:
    # Far ahead: the expiry tests of test_stripe_events.py expire every grant due by then.
    now = datetime(2100, 1, 1, tzinfo=UTC)
    async with billing_db.transaction() as session:
        for reference, amount, expires_at in [
            ("starter", 10, None),  # never expires: spent last
            ("in_late", 3, now + timedelta(days=10)),
            ("in_soon", 5, now + timedelta(days=5)),
            ("in_later", 4, now + timedelta(days=20)),
        ]:
            await credits.grant(
                session,
                tenant_id=tenant,
                kind="posts",
                amount=amount,
                reference=reference,
                expires_at=expires_at,
            )
    await reserve(billing_db, tenant, "gen_a", amount=9)
    assert await grants_left(billing_db, tenant) == {
        "starter": 10,
        "in_late": 3,
        "in_soon": 5,
        "in_later": 4,
    }  # held credits are not spent until the job commits

    answer = await commit(billing_db, tenant, "gen_a", amount=7)

    assert answer.ok
    assert answer.balances["posts"] == 22 - 7
    assert await grants_left(billing_db, tenant) == {
        "starter": 10,
        "in_late": 1,
        "in_soon": 0,
        "in_later": 4,
    }
    assert ("release", 2, "gen_a") in await ledger(billing_db, tenant)


async def grants_left(db: Database, tenant: UUID) -> dict[str, int]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(col(CreditGrant.reference), col(CreditGrant.remaining)).where(
                col(CreditGrant.tenant_id) == tenant
            )
        )
        return {reference: int(remaining) for reference, remaining in rows}


@pytest.mark.parametrize("operation", ["commit", "release"])
async def test_settling_an_unknown_reservation_changes_nothing(
    billing_db: Database, tenant: UUID, operation: str
) -> None:
    await granted(billing_db, tenant, 3)

    answer = await (commit if operation == "commit" else release)(billing_db, tenant, "gen_none")

    assert answer.code in {"unknown_reservation", "nothing_held"}
    assert await posts_left(billing_db, tenant) == 3
    assert len(await ledger(billing_db, tenant)) == 1


async def test_a_shuffled_and_duplicated_delivery_leaves_the_same_ledger(
    billing_db: Database, tenant: UUID
) -> None:
    other = UUID(int=tenant.int ^ 1)
    orderly = ["grant", "reserve", "commit"]
    messy = ["reserve", "grant", "commit", "grant", "reserve", "commit", "release"]

    for who, steps in ((tenant, orderly), (other, messy)):
        for step in steps:
            if step == "grant":
                await granted(billing_db, who, 5)
            elif step == "reserve":
                await reserve(billing_db, who, "gen_x")
            elif step == "commit":
                await commit(billing_db, who, "gen_x")
            else:
                await release(billing_db, who, "gen_x")

    # The reservation that came before the grant was refused and asked again after it.
    assert await posts_left(billing_db, tenant) == await posts_left(billing_db, other) == 4
    assert sorted(e for e, _, _ in await ledger(billing_db, tenant)) == sorted(
        e for e, _, _ in await ledger(billing_db, other)
    )


STARTER = {"posts": 5, "extraction_pages": 50, "chat_messages": 0}


async def reserve_first(db: Database, tenant: UUID, reference: str) -> QuotaAnswer:
    async with db.transaction() as session:
        question = ReserveCredits(tenant_id=tenant, kind="posts", amount=1, reference=reference)
        return await credits.reserve(session, question, starter=STARTER)


async def test_a_first_job_before_the_workspace_event_gets_the_starter_grant_once(
    billing_db: Database, tenant: UUID
) -> None:
    answers = await asyncio.gather(*(reserve_first(billing_db, tenant, f"j{n}") for n in range(8)))

    assert [a.ok for a in answers].count(True) == 5  # the starter's 5 posts, no more
    assert {a.code for a in answers if not a.ok} == {"insufficient_credits"}
    # The workspace's creation event, read later, grants nothing more.
    async with billing_db.transaction() as session:
        assert not await credits.grant_starter(session, tenant, STARTER)
    entries = await ledger(billing_db, tenant)
    assert sorted(e for e in entries if e[0] == "grant") == [
        ("grant", 5, f"starter:{tenant}"),  # posts
        ("grant", 50, f"starter:{tenant}"),  # extraction pages (chat messages: 0, none)
    ]
    async with billing_db.transaction() as session:
        pages = (await credits.balances(session, tenant_id=tenant))["extraction_pages"]
    assert pages == 50


async def test_a_workspace_that_spent_its_starter_grant_is_refused(
    billing_db: Database, tenant: UUID
) -> None:
    async with billing_db.transaction() as session:
        await credits.grant_starter(session, tenant, {"posts": 1})
    assert (await reserve_first(billing_db, tenant, "a")).ok

    refused = await reserve_first(billing_db, tenant, "b")

    assert not refused.ok
    assert refused.reason == "1 posts credits needed, 0 left"
