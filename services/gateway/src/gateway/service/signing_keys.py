"""The gateway's Ed25519 signing keys: several live at once so keys rotate without logouts.

The newest key without a retirement date signs. Rotation adds a key and gives the others a
retirement date one token lifetime away: until then they still verify and stay in the
JWKS, so nobody is logged out. Private keys are stored encrypted (Fernet, keyed from the
key-encryption secret). Every gateway process reloads the ring periodically, and at once
(rate-limited) when a token names a key it does not know yet.
"""

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import structlog
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr
from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.db import Database
from gateway.models import SigningKey

_KEY_CREATION_LOCK = 0x6BA1_0001
UNKNOWN_KID_RELOAD_SECONDS = 5.0
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KeyPair:
    kid: str
    private_key: Ed25519PrivateKey
    public_jwk: dict[str, str]

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


class KeyRing:
    """The keys in force: one signs, all verify."""

    def __init__(self, pairs: list[KeyPair], *, current: KeyPair | None = None) -> None:
        if not pairs:
            raise ValueError("a key ring needs at least one key")
        self.current = current or pairs[-1]
        self._public = {p.kid: p.public_key for p in pairs}
        self._jwks = {"keys": [p.public_jwk for p in pairs]}

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._public.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self._jwks


def fernet_for(secret: SecretStr) -> Fernet:
    digest = hashlib.sha256(secret.get_secret_value().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _public_jwk(kid: str, key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def new_signing_key(fernet: Fernet) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    kid = f"k_{uuid4().hex[:16]}"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(
        kid=kid, private_key=fernet.encrypt(pem), public_jwk=_public_jwk(kid, private.public_key())
    )


def _pair(row: SigningKey, fernet: Fernet) -> KeyPair:
    private = serialization.load_pem_private_key(fernet.decrypt(row.private_key), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise TypeError(f"signing key {row.kid} is not Ed25519")
    return KeyPair(kid=row.kid, private_key=private, public_jwk=row.public_jwk)


async def _lock(session: AsyncSession) -> None:
    # Replicas starting together must not each create a "first" key, nor rotate twice.
    await session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _KEY_CREATION_LOCK})


async def load_keyring(
    session: AsyncSession, *, fernet: Fernet, activation_seconds: float = 0.0
) -> KeyRing:
    """The keys in force, creating the first one on a fresh database.

    A key signs only once it is ``activation_seconds`` old: by then every gateway process
    has loaded it and every service can fetch it from the JWKS, so no token signed with it
    meets a verifier that does not know it yet. Until then the previous key signs.
    """
    await _lock(session)
    now = datetime.now(UTC)
    query = (
        select(SigningKey)
        .where(or_(col(SigningKey.retired_at).is_(None), col(SigningKey.retired_at) > now))
        .order_by(col(SigningKey.created_at), col(SigningKey.kid))
    )
    rows = list((await session.scalars(query)).all())
    if not any(row.retired_at is None for row in rows):
        rows.append(new_signing_key(fernet))
        session.add(rows[-1])
        await session.flush()
    active_since = now - timedelta(seconds=activation_seconds)
    ripe = [row for row in rows if row.created_at <= active_since]
    # None ripe yet (a rotation soon after the first start): the longest-known key signs.
    signer = ripe[-1] if ripe else rows[0]
    pairs = {row.kid: _pair(row, fernet) for row in rows}
    return KeyRing(list(pairs.values()), current=pairs[signer.kid])


async def rotate_signing_key(session: AsyncSession, *, fernet: Fernet, grace_seconds: int) -> str:
    """Add a signing key; the others verify for ``grace_seconds`` more. Returns the new kid."""
    await _lock(session)
    retire_at = datetime.now(UTC) + timedelta(seconds=grace_seconds)
    await session.execute(
        update(SigningKey).where(col(SigningKey.retired_at).is_(None)).values(retired_at=retire_at)
    )
    row = new_signing_key(fernet)
    session.add(row)
    await session.flush()
    return row.kid


class KeyStore:
    """The ring in force for one gateway process, kept fresh from the database."""

    def __init__(
        self,
        *,
        db: Database,
        fernet: Fernet,
        ring: KeyRing,
        unknown_kid_reload_seconds: float = UNKNOWN_KID_RELOAD_SECONDS,
        activation_seconds: float = 0.0,
    ) -> None:
        self._db, self._fernet, self.ring = db, fernet, ring
        self._activation_seconds = activation_seconds
        self._unknown_kid_reload_seconds = unknown_kid_reload_seconds
        self._loaded_at = time.monotonic()
        self._listeners: list[Callable[[KeyRing], None]] = []

    @classmethod
    async def open(
        cls,
        *,
        db: Database,
        fernet: Fernet,
        unknown_kid_reload_seconds: float = UNKNOWN_KID_RELOAD_SECONDS,
        activation_seconds: float = 0.0,
    ) -> "KeyStore":
        async with db.transaction() as session:
            ring = await load_keyring(session, fernet=fernet, activation_seconds=activation_seconds)
        return cls(
            db=db,
            fernet=fernet,
            ring=ring,
            unknown_kid_reload_seconds=unknown_kid_reload_seconds,
            activation_seconds=activation_seconds,
        )

    def on_change(self, listener: Callable[[KeyRing], None]) -> None:
        self._listeners.append(listener)
        listener(self.ring)

    async def reload(self) -> KeyRing:
        async with self._db.transaction() as session:
            self.ring = await load_keyring(
                session, fernet=self._fernet, activation_seconds=self._activation_seconds
            )
        self._loaded_at = time.monotonic()
        for listener in self._listeners:
            listener(self.ring)
        return self.ring

    async def knows_after_reload(self, token: str) -> bool:
        """Reload (at most every few seconds) when ``token`` names a key not in the ring."""
        try:
            kid = str(jwt.get_unverified_header(token).get("kid") or "")
        except jwt.PyJWTError:
            return False
        if not kid or self.ring.public_key(kid) is not None:
            return False
        if time.monotonic() - self._loaded_at < self._unknown_kid_reload_seconds:
            return False
        return (await self.reload()).public_key(kid) is not None

    async def refresh_every(self, seconds: float, stop: asyncio.Event) -> None:
        """Pick up rotations and retirements made by other processes."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds)
            if not stop.is_set():
                try:
                    await self.reload()
                except Exception:  # a database hiccup must not end the refresh loop
                    log.warning("signing_keys_reload_failed", exc_info=True)


def verification_key(ring: KeyRing, token: str) -> Ed25519PublicKey:
    """The public key named by the token's ``kid``; raises for an unknown or absent kid."""
    kid = jwt.get_unverified_header(token).get("kid")
    key = ring.public_key(str(kid)) if kid else None
    if key is None:
        raise jwt.InvalidKeyError("the token is signed by an unknown key")
    return key
