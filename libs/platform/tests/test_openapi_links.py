"""An id a route's answer carries is linked to every operation whose path takes it."""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from bai_platform.openapi import declare_answers
from bai_platform.openapi_links import ANSWER_ID, LEADS_TO, leads_to, link_to


class Thing(BaseModel):
    id: str


def _document() -> dict[str, Any]:
    app = FastAPI()
    start = link_to("post", "/v1/parts", body={"thing_id": ANSWER_ID})

    @app.post(
        "/v1/things", status_code=201, responses=leads_to(201, {"thing_id": ANSWER_ID}, start=start)
    )
    async def create_thing() -> Thing:
        return Thing(id="t")

    @app.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: str) -> Thing:
        return Thing(id=thing_id)

    @app.delete("/v1/things/{thing_id}/parts/{part_id}", status_code=204)
    async def drop_part(thing_id: str, part_id: str) -> None:
        return None

    @app.post("/v1/parts", status_code=201)
    async def create_part() -> Thing:
        return Thing(id="p")

    @app.get("/v1/parts/{part_id}")
    async def get_part(part_id: str) -> Thing:
        return Thing(id=part_id)

    declare_answers(app)
    return app.openapi()


def test_an_answers_id_leads_to_every_operation_whose_path_takes_it_and_only_there() -> None:
    created = _document()["paths"]["/v1/things"]["post"]["responses"]["201"]
    assert LEADS_TO not in created
    assert created["links"] == {
        "get_thing_v1_things__thing_id__get": {
            "operationRef": "#/paths/~1v1~1things~1{thing_id}/get",
            "parameters": {"thing_id": "$response.body#/id"},
        },
        "drop_part_v1_things__thing_id__parts__part_id__delete": {
            "operationRef": "#/paths/~1v1~1things~1{thing_id}~1parts~1{part_id}/delete",
            "parameters": {"thing_id": "$response.body#/id"},
        },
        "start": {
            "operationRef": "#/paths/~1v1~1parts/post",
            "requestBody": {"thing_id": "$response.body#/id"},
        },
    }
    assert created["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }


def test_a_link_names_its_target_by_an_escaped_path_and_a_lower_case_method() -> None:
    assert link_to("GET", "/v1/a~b/{id}") == {"operationRef": "#/paths/~1v1~1a~0b~1{id}/get"}
