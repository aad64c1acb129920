"""Alembic environment for creator: version table in the creator schema."""

from bai_platform.migrations import run_env
from creator.models import CreatorTable

run_env(CreatorTable.metadata)
