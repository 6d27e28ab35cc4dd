"""Signing keys: one current ES256 key signs, every key still within its grace period verifies.

Rotation makes a new current key and schedules the old one's retirement for after the longest
token it can have signed has expired, so `keys rotate` never breaks a token already issued.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import SigningKey
from shared.db import utcnow
from shared.errors import Unavailable
from shared.settings import Settings

ALG = "ES256"
# Old keys stay published this long past the last token they signed (clock skew, caches).
RETIRE_MARGIN = timedelta(seconds=120)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """An immutable snapshot: swapped as a whole, so readers never see a half-updated ring."""

    signing_kid: str
    # A set holding exactly one private key. joserfc picks a *random* key when a set has
    # several, so the signer must never see more than the current one; a one-key set still
    # lets joserfc write the `kid` header for us.
    signing_keys: KeySet
    verify_keys: dict[str, ECKey] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=dict)
    # kid -> retire_at, to notice a change cheaply when polling.
    fingerprint: frozenset[tuple[str, datetime | None]] = frozenset()


class KeyStore:
    """Where private keys live: files under $FAILCAT_DATA_DIR/keys (mode 0600) when the
    catalog is embedded SQLite, the `auth_signing_key` row when it is Postgres (several
    processes on several hosts must sign with the same key)."""

    def __init__(self, settings: Settings, dialect: str) -> None:
        self.keys_in_db = dialect != "sqlite"
        self.key_dir = Path(settings.data_dir) / "keys"
        self.ttl = timedelta(seconds=settings.access_token_ttl_s)

    # ---- private key material -------------------------------------------------------------

    def _key_path(self, kid: str) -> Path:
        return self.key_dir / f"{kid}.jwk.json"

    def _write_private(self, kid: str, private: dict[str, Any]) -> None:
        self.key_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.key_dir, 0o700)
        # O_EXCL + 0600 at creation: the key is never readable by others, not even briefly.
        fd = os.open(self._key_path(kid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(private, fh)

    def _read_private(self, row: SigningKey) -> ECKey | None:
        if row.private_jwk is not None:
            return ECKey.import_key(row.private_jwk)
        path = self._key_path(row.kid)
        if not path.exists():
            return None
        return ECKey.import_key(json.loads(path.read_text()))

    # ---- rows -----------------------------------------------------------------------------

    async def _published(self, session: AsyncSession) -> list[SigningKey]:
        now = utcnow()
        rows = await session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.retire_at.is_(None), SigningKey.retire_at > now))
            .order_by(SigningKey.created_at, SigningKey.kid)
        )
        return list(rows)

    async def fingerprint(self, session: AsyncSession) -> frozenset[tuple[str, datetime | None]]:
        return frozenset((r.kid, r.retire_at) for r in await self._published(session))

    async def create(self, session: AsyncSession) -> SigningKey:
        key = ECKey.generate_key("P-256", auto_kid=True)
        kid = key.kid
        assert kid is not None
        public = {**key.as_dict(private=False), "alg": ALG, "use": "sig"}
        private = {**key.as_dict(private=True), "alg": ALG, "use": "sig"}
        row = SigningKey(
            kid=kid,
            alg=ALG,
            public_jwk=public,
            private_jwk=private if self.keys_in_db else None,
        )
        if not self.keys_in_db:
            self._write_private(kid, private)
        session.add(row)
        await session.flush()
        return row

    async def rotate(self, session: AsyncSession) -> SigningKey:
        """Retire every current key after the longest-lived token it signed, then add a key."""
        retire_at = utcnow() + self.ttl + RETIRE_MARGIN
        for row in await self._published(session):
            if row.retire_at is None:
                row.retire_at = retire_at
        await session.flush()
        return await self.create(session)

    async def load(self, session: AsyncSession) -> KeyRing:
        """The ring as the database says; creates the first key when there is none, and
        rotates when the current key's private half is missing here (lost data dir)."""
        rows = await self._published(session)
        current = [r for r in rows if r.retire_at is None]
        signer = self._read_private(current[-1]) if current else None
        if signer is None:
            await (self.rotate(session) if current else self.create(session))
            rows = await self._published(session)
            current = [r for r in rows if r.retire_at is None]
            signer = self._read_private(current[-1])
            if signer is None:  # pragma: no cover - the key we just wrote must be readable
                raise Unavailable("signing key could not be loaded")
        # When several processes created a first key at once, the newest one signs everywhere.
        signing_row = current[-1]
        verify = {r.kid: ECKey.import_key(r.public_jwk) for r in rows}
        jwks = {"keys": [dict(r.public_jwk) for r in rows]}
        return KeyRing(
            signing_kid=signing_row.kid,
            signing_keys=KeySet([signer]),
            verify_keys=verify,
            jwks=jwks,
            fingerprint=frozenset((r.kid, r.retire_at) for r in rows),
        )
