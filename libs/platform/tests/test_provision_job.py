"""The provisioning Job and the migrations are safe when replicas start at once."""

import asyncio
import os
import subprocess
import sys
from uuid import uuid4

import asyncpg
import pytest

from bai_platform import provision
from bai_platform.devstack import Stack
from bai_platform.devstack.provision import service_database_url, service_passwords


def _url(stack: Stack, database: str, service: str, password: str) -> str:
    return service_database_url(
        host=stack.settings.host,
        port=stack.settings.postgres_port,
        database=database,
        service=service,
        password=password,
    )


def _job_env(stack: Stack, database: str, passwords: dict[str, str]) -> dict[str, str]:
    admin = stack.admin_dsn("postgres")
    return {
        "BAI_PROVISION_ADMIN_URL": admin,
        "BAI_PROVISION_DATABASE": database,
        **{
            f"BAI_PROVISION_{service.upper()}_URL": _url(stack, database, service, password)
            for service, password in passwords.items()
        },
    }


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


@pytest.mark.slow
async def test_two_provisioning_jobs_then_two_migrations_at_once_all_succeed(
    infra: Stack,
) -> None:
    database = f"bai_race_{uuid4().hex[:8]}"
    # Roles are per cluster: the same passwords as the session's stack keep it working.
    env = _job_env(infra, database, service_passwords(infra.state_dir))
    job = [sys.executable, "-m", "bai_platform.provision"]
    results = await asyncio.gather(_run(job, env), _run(job, env))
    assert [code for code, _ in results] == [0, 0], results

    planner_url = env["BAI_PROVISION_PLANNER_URL"]
    migrate = [sys.executable, "-m", "planner", "migrate"]
    migrate_env = {"BAI_DATABASE_URL": planner_url, "BAI_SERVICE_NAME": "planner"}
    migrations = await asyncio.gather(_run(migrate, migrate_env), _run(migrate, migrate_env))
    assert [code for code, _ in migrations] == [0, 0], migrations

    conn = await asyncpg.connect(planner_url.replace("+asyncpg", "", 1))
    try:
        assert await conn.fetchval("SELECT count(*) FROM planner.alembic_version") == 1
        assert await conn.fetchval("SELECT count(*) FROM campaigns") == 0
    finally:
        await conn.close()


def test_a_service_url_logging_in_as_another_role_is_refused_with_the_setting_named() -> None:
    with pytest.raises(provision.ProvisionError, match="BAI_PROVISION_BILLING_URL"):
        provision.password_of("billing", "postgresql+asyncpg://planner:pw@db:5432/bai")
    with pytest.raises(provision.ProvisionError, match="no password"):
        provision.password_of("billing", "postgresql+asyncpg://billing@db:5432/bai")
    assert provision.password_of("billing", "postgresql://billing:p%40ss@db/bai") == "p@ss"


def test_the_job_exits_1_with_the_reason_and_changes_nothing_on_bad_input(infra: Stack) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BAI_PROVISION_")}
    env["BAI_PROVISION_ADMIN_URL"] = infra.admin_dsn("postgres")
    result = subprocess.run(
        [sys.executable, "-m", "bai_platform.provision"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "gateway_url" in result.stderr
