"""Through Traefik (no ForwardAuth on webhooks): callbacks the owning services know nothing
of, or that are too big, are refused at the edge. (Accepted and forged callbacks of real
jobs are walked in test_n8n_engine_at_the_edge.py and test_content_month_at_the_edge.py.)"""

import json
import time

import httpx
import pytest

from bai_platform.webhooks import sign

pytestmark = pytest.mark.integration


SOME_SECRET = "any-secret-at-all-0000"  # nobody knows these jobs: no secret verifies them


def _signed(body: bytes) -> dict[str, str]:
    now = int(time.time())
    return {"X-BAI-Timestamp": str(now), "X-BAI-Signature": sign(SOME_SECRET, now, body)}


@pytest.mark.parametrize(
    "job_id",
    ["gen_0123456789abcdef", "pub_0123456789abcdef", "zzz_0123456789abcdef"],
    ids=["creator-knows-none", "planner-knows-none", "nobody-owns-the-prefix"],
)
async def test_a_callback_for_a_job_nobody_has_is_404(edge: httpx.AsyncClient, job_id: str) -> None:
    body = json.dumps({"job_id": job_id, "status": "completed"}).encode()

    response = await edge.post(f"/v1/webhooks/n8n/{job_id}", content=body, headers=_signed(body))

    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_callback_over_the_size_cap_is_413(edge: httpx.AsyncClient) -> None:
    body = b'{"job_id": "gen_0123456789abcdef", "pad": "' + b"x" * (1024 * 1024) + b'"}'

    response = await edge.post(
        "/v1/webhooks/n8n/gen_0123456789abcdef", content=body, headers=_signed(body)
    )

    assert response.status_code == 413
