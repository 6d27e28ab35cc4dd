"""GraphQL types of the auth service's admin surface. Secrets appear only in the answer of the
mutation that created them, never in a query."""

from __future__ import annotations

from datetime import datetime

import strawberry

from services.gateway.catalog.types import Sensitivity
from services.gateway.permissions import read_with
from shared.security import Scope


@read_with(Scope.ADMIN)
@strawberry.type
class OAuthClient:
    client_id: str
    name: str
    scopes: list[str]
    team: str | None
    clearance: Sensitivity
    grant_types: list[str]
    redirect_uris: list[str]
    public: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime


@read_with(Scope.ADMIN)
@strawberry.type
class ClientWithSecret:
    client: OAuthClient
    client_secret: str | None = strawberry.field(
        description="shown only in this answer; only its digest is stored"
    )


@read_with(Scope.ADMIN)
@strawberry.type
class User:
    id: strawberry.ID
    username: str
    roles: list[str]
    team: str | None
    clearance: Sensitivity
    disabled: bool
    created_at: datetime


@read_with(Scope.ADMIN)
@strawberry.type
class SigningKeyRotation:
    kid: str


@strawberry.input
class ClientInput:
    name: str
    scopes: list[str]
    team: str | None = None
    clearance: Sensitivity = Sensitivity.INTERNAL
    grant_types: list[str] | None = None
    redirect_uris: list[str] | None = None
    public: bool = False


@strawberry.input
class UserInput:
    username: str
    password: str
    roles: list[str]
    team: str | None = None
    clearance: Sensitivity = Sensitivity.INTERNAL
