"""Root fixtures: the session's local stack (see ``bai_testing.plugin``)."""

import json

import pytest

pytest_plugins = ["bai_testing.plugin"]

# Every test client is 127.0.0.1, so the per-IP quotas of the auth routes and of visitor
# tokens are lifted; the tenant quota is small enough for a test to reach, and each test
# works in its own tenant.
TEST_RATE_LIMITS = {
    "ip_auth": {"limit": 1_000_000},
    "visitor_token_ip": {"limit": 1_000_000, "window_seconds": 3600},
    "tenant_plans": {"starter": {"limit": 100}, "growth": {"limit": 300}, "agency": {"limit": 600}},
}


@pytest.fixture(scope="session")
def stack_service_env() -> dict[str, str]:
    return {
        "BAI_RATE_LIMITS": json.dumps(TEST_RATE_LIMITS),
        # Key rotations reach the test stack's gateway quickly.
        "BAI_KEY_RELOAD_SECONDS": "2",
        # The planner looks for due posts often, so publishing tests wait little (creator's
        # and mining's dispatchers poll this often anyway).
        "BAI_DISPATCH_POLL_SECONDS": "0.5",
        # Stand-in n8n workflows listen on 127.0.0.1.
        "BAI_ALLOW_PRIVATE_DESTINATIONS": "true",
        # Creator gives up on a dead workflow and times out silent ones quickly.
        "BAI_DISPATCH_BACKOFF_BASE_SECONDS": "0.2",
        "BAI_DISPATCH_MAX_ATTEMPTS": "3",
        "BAI_SWEEP_SECONDS": "1",
        # The crawler may read the test's fixture site on 127.0.0.1, and nothing else
        # internal; it need not be polite to it.
        "BAI_CRAWL_ALLOWED_HOSTS": '["127.0.0.1"]',
        "BAI_CRAWL_DELAY_SECONDS": "0",
        "BAI_CRAWL_RETRY_BASE_SECONDS": "0.1",
        # A hostile engine that drips is cut off in seconds, not the production minute.
        "BAI_ENGINE_DEADLINE_SECONDS": "3",
        "BAI_ENGINE_RECOVER_MARGIN_SECONDS": "5",
        # A hostile site's tarpit holds a crawl for seconds, not the production quarter hour.
        "BAI_CRAWL_JOB_DEADLINE_SECONDS": "6",
        "BAI_CRAWL_TIMEOUT_SECONDS": "3",
        "BAI_JOB_POLL_SECONDS": "0.5",
    }
