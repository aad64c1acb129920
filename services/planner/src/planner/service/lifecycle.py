"""The post lifecycle: which moves exist and who may make them.

```
planned ─▶ generating ─▶ draft_ready ─▶ in_review ─▶ approved ─▶ scheduled ─▶ published
              │  ▲            │  ▲          │   │        │  ▲         │
              ▼  │            │  └──────────┘   ▼        │  └─────────┤
            failed ◀──────────┼──────────── rejected     └─▶ in_review ▼
                              └─▶ generating (regenerate)            failed
```

People move posts through review and scheduling; the system moves them when content
arrives (creator) or a publishing workflow answers. A refused move is a 409 that names
the moves allowed from where the post is.
"""

from bai_platform.errors import Conflict
from planner.schemas import PostState as S

# Moves people make (editors through the API, clients through review links).
MANUAL: dict[S, frozenset[S]] = {
    S.PLANNED: frozenset(),
    S.GENERATING: frozenset(),
    S.DRAFT_READY: frozenset({S.IN_REVIEW, S.APPROVED}),
    S.IN_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.DRAFT_READY}),
    S.APPROVED: frozenset({S.SCHEDULED, S.IN_REVIEW}),
    S.SCHEDULED: frozenset({S.APPROVED}),
    S.PUBLISHED: frozenset(),
    S.FAILED: frozenset({S.APPROVED, S.IN_REVIEW}),
    S.REJECTED: frozenset({S.IN_REVIEW}),
}

# Moves the system makes: asking for content, content arriving, publishing answering.
SYSTEM: dict[S, frozenset[S]] = {
    S.PLANNED: frozenset({S.GENERATING, S.DRAFT_READY}),
    S.GENERATING: frozenset({S.DRAFT_READY, S.FAILED}),
    S.DRAFT_READY: frozenset({S.GENERATING}),
    S.IN_REVIEW: frozenset({S.GENERATING}),
    # Taken back after the workflow already posted it: the post is out there.
    S.APPROVED: frozenset({S.PUBLISHED}),
    S.SCHEDULED: frozenset({S.PUBLISHED, S.FAILED}),
    S.PUBLISHED: frozenset(),
    # A late answer to the same request may still bring content after a failure.
    # A late "published" is the truth: the post is out there.
    S.FAILED: frozenset({S.GENERATING, S.DRAFT_READY, S.PUBLISHED}),
    S.REJECTED: frozenset({S.GENERATING, S.DRAFT_READY}),
}

# Moves that need content to show: nothing empty is reviewed, approved or published.
NEEDS_CONTENT = frozenset({S.IN_REVIEW, S.APPROVED, S.SCHEDULED})
# States whose content may be edited by hand (editing a planned post makes it a draft).
EDITABLE = frozenset({S.PLANNED, S.DRAFT_READY, S.REJECTED, S.FAILED})
# States a post may be regenerated from.
REGENERABLE = frozenset({S.PLANNED, S.DRAFT_READY, S.IN_REVIEW, S.REJECTED, S.FAILED})
# States in which a post may still be moved to another time.
MOVABLE = frozenset(set(S) - {S.PUBLISHED})


class InvalidTransition(Conflict):
    code = "invalid_transition"


def check_manual(current: S, target: S) -> None:
    """Refuse a move people may not make, naming the ones they may."""
    allowed = MANUAL[current]
    if target not in allowed:
        names = sorted(s.value for s in allowed)
        raise InvalidTransition(
            f"a post in {current.value} cannot move to {target.value}; "
            f"allowed: {', '.join(names) or 'none'}",
            extra={"state": current.value, "allowed": names},
        )


def system_may(current: S, target: S) -> bool:
    return target in SYSTEM[current]
