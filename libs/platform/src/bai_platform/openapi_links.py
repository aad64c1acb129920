"""OpenAPI links: where an answer carries an id, the operations that take it are linked.

A route says which ids its success answer carries, as runtime expressions
(``responses=leads_to(201, {"campaign_id": ANSWER_ID})``). ``with_links`` then links that
answer to every operation of the document whose path takes one of those ids, each link
filling the parameters its target takes; a route added tomorrow with ``{campaign_id}`` in
its path is linked too. A link the paths cannot tell (an id that goes into a body member:
a brand's id is a new campaign's ``brand_id``) is written out with ``link_to``.

Clients follow the links, and schemathesis's stateful phase walks them to reach ids it
could never guess. A link names its target by ``operationRef`` (the path and the method),
which stays valid in the edge's merged document; the links are made per service, so they
never lead to another service's operation.
"""

from collections.abc import Iterator, Mapping
from typing import Any

# Runtime expressions (OpenAPI 3.1, "Link Object") for the ids an answer carries.
ANSWER_ID = "$response.body#/id"
FIRST_ITEM_ID = "$response.body#/items/0/id"
LEADS_TO = "x-bai-leads-to"  # read and removed by with_links
METHODS = ("get", "put", "post", "delete", "patch")


def link_to(
    method: str,
    path: str,
    *,
    parameters: Mapping[str, str] | None = None,
    body: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A link to the operation ``method path``: its parameters (and body members) from
    runtime expressions over this answer and its request."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    target: dict[str, Any] = {"operationRef": f"#/paths/{pointer}/{method.lower()}"}
    if parameters:
        target["parameters"] = dict(parameters)
    if body:
        target["requestBody"] = dict(body)
    return target


def leads_to(
    status: int, ids: Mapping[str, str], **links: dict[str, Any]
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose ``status`` answer carries ``ids`` (path parameter:
    expression), plus ``links`` written out."""
    answer: dict[str, Any] = {LEADS_TO: dict(ids)}
    if links:
        answer["links"] = links
    return {status: answer}


def with_links(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every answer that carries ids linked to the operations taking them."""
    operations = list(_operations(document))
    for _, _, operation in operations:
        for answer in operation.get("responses", {}).values():
            ids = answer.pop(LEADS_TO, None)
            if ids:
                answer["links"] = {**_links_taking(operations, ids), **answer.get("links", {})}
    return document


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _links_taking(
    operations: list[tuple[str, str, dict[str, Any]]], ids: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """A link, named by its target's operationId, to each operation whose path takes ids."""
    found = {}
    for method, path, operation in operations:
        taken = {name: expression for name, expression in ids.items() if f"{{{name}}}" in path}
        if taken:
            found[operation["operationId"]] = link_to(method, path, parameters=taken)
    return found
