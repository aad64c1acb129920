"""Small validators shared by API schemas."""

from pydantic import AfterValidator


def _refuse_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it at the edge (422), not at the insert (500).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_refuse_nul)
"""``Annotated[str, ..., NoNul]``: text that PostgreSQL can store."""
