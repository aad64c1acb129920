"""Alembic environment for billing: version table in the billing schema."""

from bai_platform.migrations import run_env
from billing.models import BillingTable

run_env(BillingTable.metadata)
