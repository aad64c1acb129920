"""Alembic environment for planner: version table in the planner schema."""

from bai_platform.migrations import run_env
from planner.models import Base

run_env(Base.metadata)
