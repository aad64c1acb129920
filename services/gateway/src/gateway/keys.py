"""The gateway's Ed25519 signing keys: several live at once so keys rotate without logouts.

The newest key that is not retired signs; every key not retired verifies and is published
in the JWKS. Private keys are stored encrypted (Fernet, keyed from the key-encryption
secret).
"""

import base64
import hashlib
from dataclasses import dataclass
from uuid import uuid4

import jwt
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import SigningKey

_KEY_CREATION_LOCK = 0x6BA1_0001


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

    def __init__(self, pairs: list[KeyPair]) -> None:
        if not pairs:
            raise ValueError("a key ring needs at least one key")
        self.current = pairs[-1]
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


async def load_keyring(session: AsyncSession, *, fernet: Fernet) -> KeyRing:
    """The keys in force, creating the first one on a fresh database."""
    # Replicas starting together must not each create a "first" key.
    await session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _KEY_CREATION_LOCK})
    query = (
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at, SigningKey.kid)
    )
    rows = list((await session.scalars(query)).all())
    if not rows:
        row = new_signing_key(fernet)
        session.add(row)
        await session.flush()
        rows = [row]
    return KeyRing([_pair(row, fernet) for row in rows])


def verification_key(ring: KeyRing, token: str) -> Ed25519PublicKey:
    """The public key named by the token's ``kid``; raises for an unknown or absent kid."""
    kid = jwt.get_unverified_header(token).get("kid")
    key = ring.public_key(str(kid)) if kid else None
    if key is None:
        raise jwt.InvalidKeyError("the token is signed by an unknown key")
    return key
