"""The local stack's side of provisioning: passwords kept in the state folder, URLs.

The statements themselves are ``bai_platform.provision``'s, shared with the Kubernetes Job.
"""

import json
import secrets
from pathlib import Path
from urllib.parse import quote

from bai_platform import provision as shared
from bai_platform.devstack.config import SERVICES


def service_passwords(state_dir: Path) -> dict[str, str]:
    """Random per-service database passwords, kept in the state folder."""
    return stored_passwords(state_dir / "secrets.json", SERVICES)


def nats_passwords(state_dir: Path, users: tuple[str, ...]) -> dict[str, str]:
    """Random NATS passwords by user (each service and the admin), kept beside them."""
    return stored_passwords(state_dir / "nats-secrets.json", users)


def stored_passwords(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Random passwords for ``names``, made once and kept in ``path`` (mode 600)."""
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        if set(names) <= stored.keys():
            return stored
    passwords = {name: secrets.token_hex(16) for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(passwords, indent=2))
    return passwords


def service_database_url(
    *, host: str, port: int, database: str, service: str, password: str
) -> str:
    return f"postgresql+asyncpg://{service}:{quote(password)}@{host}:{port}/{database}"


def provision_sync(
    admin_dsn_for: dict[str, str], *, database: str, passwords: dict[str, str]
) -> None:
    """Provision every service's role with its password from ``service_passwords``."""
    own = {service: passwords[service] for service in SERVICES}
    shared.provision_sync(admin_dsn_for, database=database, passwords=own)
