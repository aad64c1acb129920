"""The stateful phase's walks along the document's links, read from schemathesis's NDJSON
report (test_fuzz_the_api_at_the_edge).

schemathesis's summary says how many links it covered; this says how far it went: every
stateful step that took its ids from an earlier answer through a link the document
declares (inferred links apart), what it reached and how it was answered, and the longest
walk, counted in steps along links from the scenario's first request.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Walks:
    by_target: Counter[tuple[str, int]] = field(default_factory=Counter)
    inferred: int = 0
    deepest: int = 0

    @property
    def steps(self) -> int:
        return sum(self.by_target.values())

    @classmethod
    def read(cls, report_dir: Path) -> "Walks":
        """The walks of the run whose NDJSON report is in ``report_dir``."""
        walks = cls()
        (report,) = report_dir.glob("*.ndjson")
        with report.open() as events:
            for line in events:
                finished = json.loads(line).get("ScenarioFinished")
                if finished and finished["phase"] == "stateful":
                    walks._add(finished["recorder"])
        return walks

    def _add(self, recorder: dict[str, Any]) -> None:
        cases, interactions = recorder.get("cases", {}), recorder.get("interactions", {})
        depth: dict[str, int] = {}
        for case_id, case in cases.items():  # in the order they were sent
            transition = case.get("transition")
            if not (transition and case.get("is_transition_applied")):
                continue
            if transition["is_inferred"]:
                self.inferred += 1
                continue
            depth[case_id] = depth.get(transition["parent_id"], 0) + 1
            self.deepest = max(self.deepest, depth[case_id])
            target = transition["id"].rsplit(" -> ", 1)[-1]
            answer = interactions.get(case_id, {}).get("response") or {}
            self.by_target[(target, answer.get("status_code", 0))] += 1

    def table(self) -> str:
        rows = [
            f"{n:>5}  {status:>3}  {target}"
            for (target, status), n in sorted(self.by_target.items())
        ]
        return "\n".join(
            [
                f"Stateful steps along the document's links: {self.steps} "
                f"(and {self.inferred} along inferred ones); the longest walk: {self.deepest}",
                "steps  answer  operation reached",
                *rows,
            ]
        )
