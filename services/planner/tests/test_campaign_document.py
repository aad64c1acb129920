"""The document states the "exactly one of" rules of the planner's validators, so clients
and fuzzers send what the API takes: the document and the validators agree on each case."""

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from planner.app import create_app
from planner.schemas import Cadence, ReviewLinkCreate

POST_ID = "3f0c2a4e-8a53-4a43-9d2b-1b2b6a3f9c11"
CASES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (Cadence, {"per_week": 3}),
    (Cadence, {"per_day": 2, "weekdays": ["mon"], "times": ["09:00", "17:00"]}),
    (Cadence, {"per_week": 3, "per_day": None}),
    (Cadence, {"per_week": None, "per_day": 1}),
    (Cadence, {"per_week": 3, "per_day": 2}),
    (Cadence, {}),
    (Cadence, {"per_week": None, "per_day": None}),
    (Cadence, {"weekdays": ["mon"]}),
    (ReviewLinkCreate, {"post_id": POST_ID}),
    (ReviewLinkCreate, {"month": "2026-12", "post_id": None}),
    (ReviewLinkCreate, {"post_id": POST_ID, "month": "2026-12"}),
    (ReviewLinkCreate, {"reviewer": "Ana"}),
    (ReviewLinkCreate, {"post_id": None, "month": None}),
]


def _accepted(model: type[BaseModel], value: dict[str, Any]) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("model", "value"), CASES)
def test_the_document_and_the_validator_agree(
    model: type[BaseModel], value: dict[str, Any]
) -> None:
    schema = create_app().openapi()["components"]["schemas"][model.__name__]
    assert Draft202012Validator(schema).is_valid(value) == _accepted(model, value)


def test_both_answers_occur() -> None:
    assert {_accepted(model, value) for model, value in CASES} == {True, False}
