"""Generating and checking secrets: client secrets, codes, refresh tokens and passwords."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2id with the library's defaults (RFC 9106 "low memory" profile, ~50 ms).
_password_hasher = PasswordHasher()

# Verified when a username is unknown, so that the answer takes as long as for a known one and
# timing does not reveal which usernames exist.
_DUMMY_PASSWORD_HASH = _password_hasher.hash("failcat-timing-equaliser")


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret (256 bits by default)."""
    return secrets.token_urlsafe(nbytes)


def new_client_id() -> str:
    """A random client id (128 bits) in lowercase hex: never starts with "-" (which a shell
    command line such as `failcat clients show ID` would read as an option) and is
    copied by a double click."""
    return secrets.token_hex(16)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret. A slow KDF adds nothing when the secret is 256 random
    bits, and a fast digest can be looked up by value (codes, refresh tokens)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_digest: str | None) -> bool:
    if not stored_digest or not secret:
        return False
    return hmac.compare_digest(digest(secret), stored_digest)


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def password_matches(password: str, stored_hash: str | None) -> bool:
    """CPU-bound (~50 ms): call it through asyncio.to_thread from async code."""
    try:
        return _password_hasher.verify(stored_hash or _DUMMY_PASSWORD_HASH, password) and (
            stored_hash is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
