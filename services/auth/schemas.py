"""What the auth service hands out about clients and users (never a secret or a hash)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.auth.models import AuthUser, OAuthClient


class ClientOut(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    team: str | None
    clearance: str
    grant_types: list[str]
    redirect_uris: list[str]
    public: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: OAuthClient) -> ClientOut:
        return cls(
            client_id=row.client_id,
            name=row.name,
            scopes=list(row.scopes),
            team=row.team,
            clearance=row.clearance,
            grant_types=list(row.grant_types),
            redirect_uris=list(row.redirect_uris),
            public=row.secret_hash is None,
            disabled=row.disabled,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class UserOut(BaseModel):
    id: str
    username: str
    roles: list[str]
    team: str | None
    clearance: str
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, row: AuthUser) -> UserOut:
        return cls(
            id=row.id,
            username=row.username,
            roles=list(row.roles),
            team=row.team,
            clearance=row.clearance,
            disabled=row.disabled,
            created_at=row.created_at,
        )
