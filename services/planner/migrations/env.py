"""Alembic environment for planner: version table in the planner schema."""

from bai_platform.migrations import run_env
from planner.models import PlannerTable

run_env(PlannerTable.metadata)
