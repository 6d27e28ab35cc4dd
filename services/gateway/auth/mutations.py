"""Admin mutations over the auth service. The service does not check its caller: every field
here requires the admin scope."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.auth.service import DEFAULT_GRANT_TYPES
from services.gateway.auth.types import (
    ClientInput,
    ClientWithSecret,
    OAuthClient,
    SigningKeyRotation,
    User,
    UserInput,
)
from services.gateway.permissions import scoped
from shared.security import Scope

ADMIN = scoped(Scope.ADMIN)


@strawberry.type
class AuthMutation:
    @strawberry.mutation(permission_classes=ADMIN)
    async def create_client(self, info: Info, client: ClientInput) -> ClientWithSecret:
        created, secret = await info.context.app_state.auth.create_client(
            await info.context.session(),
            name=client.name,
            scopes=client.scopes,
            team=client.team,
            clearance=client.clearance.value,
            grant_types=client.grant_types or DEFAULT_GRANT_TYPES,
            redirect_uris=client.redirect_uris or (),
            public=client.public,
            actor=info.context.principal,
        )
        return ClientWithSecret(client=created, client_secret=secret)  # type: ignore[arg-type]

    @strawberry.mutation(permission_classes=ADMIN)
    async def rotate_client_secret(self, info: Info, client_id: str) -> ClientWithSecret:
        auth = info.context.app_state.auth
        client, secret = await auth.rotate_client_secret(
            await info.context.session(), client_id, info.context.principal
        )
        return ClientWithSecret(client=client, client_secret=secret)

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="No new tokens for the client; its live tokens are revoked.",
    )
    async def disable_client(self, info: Info, client_id: str) -> OAuthClient:
        auth = info.context.app_state.auth
        return await auth.disable_client(
            await info.context.session(), client_id, info.context.principal
        )

    @strawberry.mutation(permission_classes=ADMIN)
    async def create_user(self, info: Info, user: UserInput) -> User:
        return await info.context.app_state.auth.create_user(
            await info.context.session(),
            username=user.username,
            password=user.password,
            roles=user.roles,
            team=user.team,
            clearance=user.clearance.value,
            actor=info.context.principal,
        )

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="A new current signing key; tokens signed with older keys stay valid.",
    )
    async def rotate_signing_keys(self, info: Info) -> SigningKeyRotation:
        kid = await info.context.app_state.auth.rotate_keys(
            await info.context.session(), info.context.principal
        )
        return SigningKeyRotation(kid=kid)
