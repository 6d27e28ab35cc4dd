"""Every query of the auth service, and nothing else.

Two faces over the same statements: `AuthRepository` for async service code, and
`GrantRepository` for authlib's synchronous grant hooks, which run inside
`AsyncSession.run_sync` (a sync Session whose I/O is still awaited on the event loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.auth.models import (
    AuthorizationCode,
    AuthUser,
    DeviceCode,
    IssuedAccessToken,
    OAuthClient,
    RefreshToken,
)
from shared.db import utcnow

Revoked = list[tuple[str, datetime]]


def _live_tokens_of_grant(grant_id: str) -> Select:
    return select(IssuedAccessToken.jti, IssuedAccessToken.expires_at).where(
        IssuedAccessToken.grant_id == grant_id, IssuedAccessToken.revoked_at.is_(None)
    )


def _live_tokens_of_client(client_id: str) -> Select:
    return select(IssuedAccessToken.jti, IssuedAccessToken.expires_at).where(
        IssuedAccessToken.client_id == client_id,
        IssuedAccessToken.revoked_at.is_(None),
        IssuedAccessToken.expires_at > utcnow(),
    )


class GrantRepository:
    """Sync queries for authlib's hooks."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: object) -> None:
        self.session.add(row)
        self.session.flush()

    def client(self, client_id: str) -> OAuthClient | None:
        return self.session.get(OAuthClient, client_id)

    def user(self, user_id: str) -> AuthUser | None:
        return self.session.get(AuthUser, user_id)

    def authorization_code(self, code_hash: str) -> AuthorizationCode | None:
        return self.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash)
        )

    def refresh_token(self, token_hash: str) -> RefreshToken | None:
        return self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )

    def device_code(self, device_code_hash: str) -> DeviceCode | None:
        return self.session.scalar(
            select(DeviceCode).where(DeviceCode.device_code_hash == device_code_hash)
        )

    def device_code_by_user_code(self, user_code: str) -> DeviceCode | None:
        return self.session.scalar(select(DeviceCode).where(DeviceCode.user_code == user_code))

    def access_token(self, jti: str) -> IssuedAccessToken | None:
        return self.session.get(IssuedAccessToken, jti)

    def revoke_access_token(self, jti: str) -> None:
        self.session.execute(
            update(IssuedAccessToken)
            .where(IssuedAccessToken.jti == jti, IssuedAccessToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    def revoke_grant(self, grant_id: str) -> Revoked:
        """Every access and refresh token descending from one authorization."""
        now = utcnow()
        revoked = [
            (r.jti, r.expires_at) for r in self.session.execute(_live_tokens_of_grant(grant_id))
        ]
        self.session.execute(
            update(IssuedAccessToken)
            .where(IssuedAccessToken.grant_id == grant_id, IssuedAccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.grant_id == grant_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return revoked


class AuthRepository:
    """Async queries for the service's own operations."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: object) -> None:
        self.session.add(row)
        await self.session.flush()

    async def count_clients(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(OAuthClient)) or 0)

    async def clients(self) -> list[OAuthClient]:
        return list(
            await self.session.scalars(select(OAuthClient).order_by(OAuthClient.created_at))
        )

    async def client(self, client_id: str) -> OAuthClient | None:
        return await self.session.get(OAuthClient, client_id)

    async def users(self) -> list[AuthUser]:
        return list(await self.session.scalars(select(AuthUser).order_by(AuthUser.username)))

    async def user(self, user_id: str) -> AuthUser | None:
        return await self.session.get(AuthUser, user_id)

    async def subjects_named(self, names: Sequence[str]) -> dict[str, str]:
        """Each name that identifies an enabled account (its id or its username) or a client
        (its id), to the subject its tokens carry: the account's id, the client's id."""
        wanted = set(names)
        out: dict[str, str] = {}
        users = select(AuthUser.id, AuthUser.username).where(
            (AuthUser.id.in_(wanted) | AuthUser.username.in_(wanted)) & ~AuthUser.disabled
        )
        for user_id, username in await self.session.execute(users):
            out.update({n: user_id for n in (user_id, username) if n in wanted})
        clients = select(OAuthClient.client_id).where(OAuthClient.client_id.in_(wanted))
        out.update({c: c for c in await self.session.scalars(clients) if c not in out})
        return out

    async def display_names(self, subjects: Sequence[str]) -> dict[str, str]:
        """Each subject that is an account's (to its username) or a client's (to its name),
        as tokens name them (preferred_username, client_name); two statements."""
        wanted = set(subjects)
        users = select(AuthUser.id, AuthUser.username).where(AuthUser.id.in_(wanted))
        out: dict[str, str] = {i: name for i, name in await self.session.execute(users)}
        clients = select(OAuthClient.client_id, OAuthClient.name).where(
            OAuthClient.client_id.in_(wanted)
        )
        for client_id, name in await self.session.execute(clients):
            out.setdefault(client_id, name)
        return out

    async def user_by_name(self, username: str) -> AuthUser | None:
        return await self.session.scalar(select(AuthUser).where(AuthUser.username == username))

    async def device_code_by_user_code(self, user_code: str) -> DeviceCode | None:
        return await self.session.scalar(
            select(DeviceCode).where(DeviceCode.user_code == user_code)
        )

    async def revoke_client_tokens(self, client_id: str) -> Revoked:
        now = utcnow()
        revoked = [
            (r.jti, r.expires_at)
            for r in await self.session.execute(_live_tokens_of_client(client_id))
        ]
        await self.session.execute(
            update(IssuedAccessToken)
            .where(IssuedAccessToken.client_id == client_id, IssuedAccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.client_id == client_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return revoked

    async def revoke_user_tokens(self, user_id: str) -> Revoked:
        """Every access and refresh token a person's sign-ins produced, across clients."""
        now = utcnow()
        live = select(IssuedAccessToken.jti, IssuedAccessToken.expires_at).where(
            IssuedAccessToken.user_id == user_id,
            IssuedAccessToken.revoked_at.is_(None),
            IssuedAccessToken.expires_at > now,
        )
        revoked = [(r.jti, r.expires_at) for r in await self.session.execute(live)]
        await self.session.execute(
            update(IssuedAccessToken)
            .where(IssuedAccessToken.user_id == user_id, IssuedAccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return revoked

    async def revoked_since(self, since: datetime) -> Revoked:
        """Revoked tokens not yet expired: what resource servers must keep refusing."""
        rows = await self.session.execute(
            select(IssuedAccessToken.jti, IssuedAccessToken.expires_at).where(
                IssuedAccessToken.revoked_at.is_not(None),
                IssuedAccessToken.revoked_at >= since,
                IssuedAccessToken.expires_at > utcnow(),
            )
        )
        return [(r.jti, r.expires_at) for r in rows]
