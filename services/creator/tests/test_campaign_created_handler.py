"""``on_campaign_created``: planner's event becomes creator's campaign brief, exactly once."""

from collections.abc import Awaitable, Callable
from datetime import date
from uuid import UUID, uuid4

from bai_contracts import CampaignCreated
from bai_platform.envelope import Envelope, new_event
from creator.models import CampaignBrief

CampaignCreatedFor = Callable[[UUID], Envelope]
Deliver = Callable[[Envelope], Awaitable[None]]
BriefsOf = Callable[[UUID], Awaitable[list[CampaignBrief]]]


async def test_the_handler_stores_the_campaigns_brief(
    tenant: UUID, campaign_created: CampaignCreatedFor, deliver: Deliver, briefs_of: BriefsOf
) -> None:
    envelope = campaign_created(tenant)
    event = envelope.payload(CampaignCreated)

    await deliver(envelope)

    [brief] = await briefs_of(event.campaign_id)
    assert brief.tenant_id == tenant
    assert brief.name == "Spring sale"
    assert brief.goal == "Fill the terrace on weekday afternoons"
    assert brief.channels == ["instagram", "email"]
    assert (brief.starts_on, brief.ends_on) == (date(2026, 3, 1), date(2026, 3, 31))
    assert brief.source_event_id == envelope.id


async def test_the_same_event_applied_twice_leaves_one_brief(
    tenant: UUID, campaign_created: CampaignCreatedFor, deliver: Deliver, briefs_of: BriefsOf
) -> None:
    envelope = campaign_created(tenant)

    await deliver(envelope)
    await deliver(envelope)

    briefs = await briefs_of(envelope.payload(CampaignCreated).campaign_id)
    assert [b.source_event_id for b in briefs] == [envelope.id]


async def test_a_replay_under_a_new_event_id_keeps_the_first_brief(
    tenant: UUID, campaign_created: CampaignCreatedFor, deliver: Deliver, briefs_of: BriefsOf
) -> None:
    first = campaign_created(tenant)
    event = first.payload(CampaignCreated)
    renamed = event.model_copy(update={"name": "Renamed on replay"})
    replay = new_event(renamed, source="planner", tenant_id=tenant, subject=first.subject)
    assert replay.id != first.id

    await deliver(first)
    await deliver(replay)

    [brief] = await briefs_of(event.campaign_id)
    assert (brief.name, brief.source_event_id) == ("Spring sale", first.id)


async def test_an_event_with_only_the_required_fields_stores_an_empty_brief(
    tenant: UUID, deliver: Deliver, briefs_of: BriefsOf
) -> None:
    campaign_id = uuid4()
    minimal = CampaignCreated(campaign_id=campaign_id, name="Bare")
    envelope = new_event(minimal, source="planner", tenant_id=tenant, subject=str(campaign_id))

    await deliver(envelope)

    [brief] = await briefs_of(campaign_id)
    assert (brief.name, brief.goal, brief.channels) == ("Bare", None, [])
    assert (brief.starts_on, brief.ends_on) == (None, None)
