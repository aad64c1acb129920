"""Alembic environment for mining: version table in the mining schema."""

from bai_platform.migrations import run_env
from mining.models import MiningTable

run_env(MiningTable.metadata)
