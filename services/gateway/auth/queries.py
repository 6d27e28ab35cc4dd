"""Admin queries over the auth service: clients and users."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.gateway.auth.types import OAuthClient, User
from services.gateway.permissions import scoped
from shared.security import Scope


@strawberry.type
class AuthQuery:
    @strawberry.field(permission_classes=scoped(Scope.ADMIN))
    async def clients(self, info: Info) -> list[OAuthClient]:
        return await info.context.app_state.auth.list_clients(await info.context.session())

    @strawberry.field(permission_classes=scoped(Scope.ADMIN))
    async def client(self, info: Info, client_id: str) -> OAuthClient:
        auth = info.context.app_state.auth
        return await auth.get_client(await info.context.session(), client_id)

    @strawberry.field(permission_classes=scoped(Scope.ADMIN))
    async def users(self, info: Info) -> list[User]:
        return await info.context.app_state.auth.list_users(await info.context.session())
