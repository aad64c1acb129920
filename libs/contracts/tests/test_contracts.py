from uuid import uuid4

import pytest

from bai_contracts import (
    STREAMS,
    CampaignCreated,
    GenerationResult,
    PublishResult,
    WorkflowReport,
    stream_for_subject,
)


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


def test_a_workflows_callback_is_read_by_its_owners_contract_never_rejected_for_shape() -> None:
    # A reply of the wrong shape is the owner's to judge and say on the job: reading it
    # never fails, and what is not text reads as absent (a status is named by its JSON).
    odd = {"job_id": 7, "status": 5, "error": ["x"], "url": {"a": 1}, "content": "Hello"}

    generation = GenerationResult.model_validate(odd)
    published = PublishResult.model_validate(odd)

    assert (generation.job_id, generation.status, generation.error) == (None, "5", None)
    assert generation.content == "Hello"
    assert published.url is None
    assert PublishResult.model_validate({"status": "published", "url": "https://x.test/p/1"}).url


def test_a_workflow_report_ignores_the_fields_of_other_owners() -> None:
    report = WorkflowReport.model_validate({"status": "failed", "error": "quota", "page": 3})
    assert (report.status, report.error) == ("failed", "quota")
