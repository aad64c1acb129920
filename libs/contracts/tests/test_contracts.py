from uuid import uuid4

import pytest

from bai_contracts import STREAMS, CampaignCreated, stream_for_subject


def test_every_service_owns_one_stream_named_after_it() -> None:
    assert {s.name for s in STREAMS} == {"GATEWAY", "PLANNER", "CREATOR", "MINING", "BILLING"}
    assert next(s for s in STREAMS if s.name == "PLANNER").subjects == ["bai.planner.>"]


def test_subject_is_routed_to_the_owning_stream() -> None:
    assert stream_for_subject(CampaignCreated.subject) == "PLANNER"


def test_subject_outside_every_stream_is_refused() -> None:
    with pytest.raises(LookupError):
        stream_for_subject("bai.unknown.thing.happened.v1")


def test_contract_ignores_fields_added_by_newer_producers() -> None:
    payload = {"campaign_id": str(uuid4()), "name": "Launch", "added_later": 1}
    event = CampaignCreated.model_validate(payload)
    assert event.name == "Launch"
    assert not hasattr(event, "added_later")
