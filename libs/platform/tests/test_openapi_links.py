"""A route's success answer links to the operations its id leads to, by operationRef, and
the links survive the problem declarations."""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from bai_platform.openapi import ANSWER_ID, declare_problems, link_to, links, links_for


class Thing(BaseModel):
    id: str


def _document() -> dict[str, Any]:
    app = FastAPI()
    thing = "/v1/things/{thing_id}"
    answer_links = links_for(201, "thing_id", ANSWER_ID, get_thing=("get", thing))

    @app.post("/v1/things", status_code=201, responses=answer_links)
    async def create_thing() -> Thing:
        return Thing(id="t")

    @app.get(thing)
    async def get_thing(thing_id: str) -> Thing:
        return Thing(id=thing_id)

    declare_problems(app)
    return app.openapi()


def test_a_link_names_its_target_by_path_and_method_and_its_parameter_by_expression() -> None:
    created = _document()["paths"]["/v1/things"]["post"]["responses"]["201"]
    assert created["links"] == {
        "get_thing": {
            "operationRef": "#/paths/~1v1~1things~1{thing_id}/get",
            "parameters": {"thing_id": "$response.body#/id"},
        }
    }
    assert created["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }


def test_a_link_may_fill_members_of_the_targets_body() -> None:
    declared = links(201, start=link_to("POST", "/v1/a~b", body={"thing_id": ANSWER_ID}))
    assert declared == {
        201: {
            "links": {
                "start": {
                    "operationRef": "#/paths/~1v1~1a~0b/post",
                    "requestBody": {"thing_id": "$response.body#/id"},
                }
            }
        }
    }
