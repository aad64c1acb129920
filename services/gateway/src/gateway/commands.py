"""Operator commands of the gateway: ``python -m gateway <command>``."""

import asyncio

from rich.console import Console

from bai_platform.db import Database
from gateway.service import signing_keys
from gateway.settings import GatewaySettings


def rotate_signing_key() -> None:
    """Add a new signing key; the current ones keep verifying until their tokens expire."""
    settings = GatewaySettings()
    kid = asyncio.run(_rotate(settings))
    Console().print(
        f"new signing key {kid}; the previous keys verify for "
        f"{settings.key_retirement_grace_seconds} s more. Gateways sign with the new key "
        f"once it is {settings.key_activation_seconds:g} s old (every process has it then)."
    )


async def _rotate(settings: GatewaySettings) -> str:
    database = Database(settings)
    try:
        async with database.transaction() as session:
            return await signing_keys.rotate_signing_key(
                session,
                fernet=signing_keys.fernet_for(settings.key_encryption_secret),
                grace_seconds=settings.key_retirement_grace_seconds,
            )
    finally:
        await database.dispose()
