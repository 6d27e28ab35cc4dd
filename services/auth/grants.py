"""authlib grants and endpoints, each tightened where authlib's defaults are too lenient.

Every hook here is synchronous (authlib calls it that way) and runs inside
`AsyncSession.run_sync`, so `self.server.repo` is a sync repository whose I/O is still awaited
on the event loop through SQLAlchemy's greenlet bridge: nothing blocks the loop on the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialMixin,
)

from services.auth import protocol
from services.auth.credentials import digest, secret_matches
from services.auth.models import AuthorizationCode, AuthUser, DeviceCode, OAuthClient
from services.auth.tokens import InvalidToken
from shared.db import utcnow
from shared.ids import new_id
from shared.security import ROLES

if TYPE_CHECKING:
    from services.auth.server import FailcatAuthorizationServer

AUTHORIZATION_CODE_TTL = timedelta(minutes=5)
DEVICE_CODE_TTL_S = 600
CONFIDENTIAL_AUTH = ["client_secret_basic", "client_secret_post"]
ANY_CLIENT_AUTH = [*CONFIDENTIAL_AUTH, "none"]


# ---- model adapters ------------------------------------------------------------------------


class ClientView(ClientMixin):
    """authlib's view of a client row."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.team = row.team
        self.clearance = row.clearance
        self.allowed = frozenset(row.scopes)
        self.public = row.secret_hash is None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # Always demand redirect_uri explicitly; there is no default to fall back to.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """All allowed scopes when none are asked for; None (-> invalid_scope) when any asked
        scope is not allowed. authlib's documented example silently drops those instead."""
        if not scope:
            return " ".join(sorted(self.allowed))
        asked = list(dict.fromkeys(scope_to_list(scope)))
        if not set(asked) <= self.allowed:
            return None
        return " ".join(asked)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (RFC 9700 section 4.1.3): no prefix, pattern or
        # normalisation matching.
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        # The mixin's documented example compares plaintext; we store and compare digests.
        return secret_matches(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in CONFIDENTIAL_AUTH

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.public:
            return False
        return grant_type in self.row.grant_types


@dataclass(frozen=True)
class UserView:
    id: str
    username: str
    team: str | None
    clearance: str
    scopes: frozenset[str]

    @classmethod
    def of(cls, row: AuthUser) -> UserView:
        scopes = frozenset(str(s) for role in row.roles for s in ROLES.get(role, ()))
        return cls(row.id, row.username, row.team, row.clearance, scopes)

    def get_user_id(self) -> str:
        return self.id


class TokenView:
    """What introspection and revocation see of an access or refresh token."""

    def __init__(self, kind: str, row: Any, claims: dict[str, Any] | None = None) -> None:
        self.kind = kind  # "access_token" | "refresh_token"
        self.row = row
        self.claims = claims or {}

    def check_client(self, client: ClientView) -> bool:
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope

    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None


class DeviceCredential(DeviceCredentialMixin):
    def __init__(self, row: DeviceCode) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def get_user_code(self) -> str:
        return self.row.user_code

    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()


def _server(grant: Any) -> FailcatAuthorizationServer:
    return grant.server


# Printable ASCII but the quote and backslash: what an OAuth error_description may hold.
_DESCRIBABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')


def shown(value: str, limit: int = 200) -> str:
    """A value the caller sent, fit for an error_description. authlib refuses to build an
    error whose description holds a quote, a backslash or a non-ASCII character (RFC 6749
    section 5.2): it raises ValueError, a 500. Those are percent-encoded, and a long value cut."""
    value = value if len(value) <= limit else value[:limit] + "..."
    return quote(value, safe=_DESCRIBABLE)


class StrictScopeMixin:
    """Refuse, with invalid_scope, a scope unknown to the server or not allowed to the client."""

    def validate_requested_scope(self) -> None:
        scope = self.request.payload.scope  # type: ignore[attr-defined]
        self.server.validate_requested_scope(scope)  # type: ignore[attr-defined]
        client = self.request.client  # type: ignore[attr-defined]
        if scope and client is not None and client.get_allowed_scope(scope) is None:
            raise InvalidScopeError(f"scope not allowed for this client: {scope}")


# ---- grants --------------------------------------------------------------------------------


class ClientCredentialsGrant(StrictScopeMixin, grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH


class S256CodeChallenge(CodeChallenge):
    """PKCE for every client, confidential ones included, and S256 only (`plain` would let an
    intercepted authorization request redeem the code)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: Any) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(StrictScopeMixin, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT_AUTH

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: ClientView) -> str:
        uri = request.payload.redirect_uri
        if uri and not client.check_redirect_uri(uri):
            # authlib's own error echoes the URI raw (see `shown`).
            raise InvalidRequestError(
                f"redirect_uri {shown(uri)} is not registered for this client"
            )
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def create_authorization_response(self, redirect_uri: str, grant_user: Any) -> Any:
        if grant_user is not None:
            # The person must hold every scope asked for; with none asked, the token gets
            # what both the client and the person may have.
            asked = self.request.payload.scope
            granted = set(scope_to_list(self.request.scope) or [])
            if asked and not granted <= grant_user.scopes:
                raise InvalidScopeError("scope not granted to this user", redirect_uri=redirect_uri)
            granted &= grant_user.scopes
            if not granted:
                # An empty scope would fall back to "everything the client may have".
                raise InvalidScopeError(
                    "no requested scope is granted to this user", redirect_uri=redirect_uri
                )
            self.request.scope = " ".join(sorted(granted))
        return super().create_authorization_response(redirect_uri, grant_user)

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        _server(self).repo.add(
            AuthorizationCode(
                id=new_id(),
                code_hash=digest(code),
                client_id=request.client.get_client_id(),
                user_id=request.user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "",
                code_challenge=data["code_challenge"],
                code_challenge_method=data.get("code_challenge_method", "S256"),
                expires_at=utcnow() + AUTHORIZATION_CODE_TTL,
            )
        )

    def query_authorization_code(self, code: str, client: ClientView) -> Any:
        server = _server(self)
        # Each refusal says why: authlib's were "Invalid 'code' in request." for an unknown or
        # expired code and "Invalid 'redirect_uri' in request." for a missing one.
        row = server.repo.authorization_code(digest(code))
        if row is None or row.client_id != client.get_client_id():
            raise InvalidGrantError("unknown authorization code")
        if row.used_at is not None:
            # A second redemption means the code leaked: refuse it and revoke everything the
            # first redemption produced (RFC 6749 section 4.1.2).
            server.revoked_now(server.repo.revoke_grant(row.id))
            raise InvalidGrantError("authorization code already used; its tokens are revoked")
        if row.expires_at <= utcnow():
            minutes = int(AUTHORIZATION_CODE_TTL.total_seconds() // 60)
            raise InvalidGrantError(f"authorization code expired (it lives {minutes} minutes)")
        if self.request.payload.redirect_uri != row.redirect_uri:
            raise InvalidGrantError(
                "redirect_uri must be the one given to the authorization endpoint"
            )
        return _CodeView(row)

    def delete_authorization_code(self, authorization_code: Any) -> None:
        # Marked used rather than deleted, so a replay is recognised (see above).
        authorization_code.row.used_at = utcnow()
        _server(self).session.flush()

    def authenticate_user(self, authorization_code: Any) -> UserView:
        row = _server(self).repo.user(authorization_code.row.user_id)
        if row is None or row.disabled:
            raise InvalidGrantError("the account that approved this code is disabled")
        return UserView.of(row)

    def save_token(self, token: dict) -> None:
        _server(self).store_token(
            token, self.request, grant_id=self.request.authorization_code.row.id
        )


class _CodeView:
    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT_AUTH
    # Rotate on every use: a stolen refresh token works at most once before the family dies.
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
        server = _server(self)
        row = server.repo.refresh_token(digest(refresh_token))
        if row is None:
            raise InvalidGrantError("unknown refresh token")
        if row.revoked_at is not None:
            # Reuse of a rotated-out token: someone else holds the family. Revoke all of it.
            server.revoked_now(server.repo.revoke_grant(row.grant_id))
            raise InvalidGrantError(
                "refresh token already used or revoked: every token of this sign-in is "
                "revoked, sign in again"
            )
        if row.expires_at <= utcnow():
            raise InvalidGrantError("refresh token expired: sign in again")
        return TokenView("refresh_token", row)

    def authenticate_user(self, refresh_token: TokenView) -> UserView:
        row = _server(self).repo.user(refresh_token.row.user_id)
        if row is None or row.disabled:
            # invalid_grant (RFC 6749 section 5.2); authlib's answer was invalid_request.
            raise InvalidGrantError("the account of this refresh token is disabled")
        return UserView.of(row)

    def _validate_token_scope(self, token: TokenView) -> None:
        # authlib's check refuses an unknown scope or one beyond the grant without naming it.
        scope = self.request.payload.scope
        if not scope:
            return
        self.server.validate_requested_scope(scope)
        beyond = set(scope_to_list(scope)) - set(scope_to_list(token.get_scope()) or [])
        if beyond:
            raise InvalidScopeError(
                f"scope beyond this sign-in's grant: {' '.join(sorted(beyond))}"
            )

    def revoke_old_credential(self, refresh_token: TokenView) -> None:
        refresh_token.row.revoked_at = utcnow()
        _server(self).session.flush()

    def save_token(self, token: dict) -> None:
        _server(self).store_token(
            token, self.request, grant_id=self.request.refresh_token.row.grant_id
        )


class DeviceGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ANY_CLIENT_AUTH

    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        row = _server(self).repo.device_code(digest(device_code))
        if row is None or row.consumed_at is not None:
            return None
        self.request.device_row = row
        return DeviceCredential(row)

    def query_user_grant(self, user_code: str) -> tuple[UserView, bool] | None:
        row = self.request.device_row
        if row.decision is None:
            return None
        if row.decision != "approved":
            return None, False  # type: ignore[return-value]
        user = _server(self).repo.user(row.user_id) if row.user_id else None
        if user is None or user.disabled:
            return None, False  # type: ignore[return-value]
        return UserView.of(user), True

    def should_slow_down(self, credential: DeviceCredential) -> bool:
        row = credential.row
        now = utcnow()
        too_soon = row.last_polled_at is not None and (now - row.last_polled_at) < timedelta(
            seconds=row.interval_s
        )
        if too_soon:
            row.interval_s += 5  # RFC 8628 section 3.5: slow_down adds 5 s for good.
        row.last_polled_at = now
        _server(self).session.flush()
        return too_soon

    def save_token(self, token: dict) -> None:
        row = self.request.device_row
        row.consumed_at = utcnow()  # a device code yields tokens once
        _server(self).store_token(token, self.request, grant_id=row.id)


# ---- endpoints -----------------------------------------------------------------------------


class DeviceAuthorization(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ANY_CLIENT_AUTH
    EXPIRES_IN = DEVICE_CODE_TTL_S

    def create_endpoint_response(self, request: Any) -> Any:
        client = self.authenticate_client(request)
        if not client.check_grant_type(protocol.DEVICE_GRANT):
            raise UnauthorizedClientError("the client may not use the device authorization grant")
        scope = request.payload.scope
        self.server.validate_requested_scope(scope)
        if scope and client.get_allowed_scope(scope) is None:
            raise InvalidScopeError(f"scope not allowed for this client: {scope}")
        return super().create_endpoint_response(request)

    def get_verification_uri(self) -> str:
        return self.server.service.settings.issuer + protocol.DEVICE

    def save_device_credential(self, client_id: str, scope: str | None, data: dict) -> None:
        self.server.repo.add(
            DeviceCode(
                id=new_id(),
                device_code_hash=digest(data["device_code"]),
                user_code=data["user_code"],
                client_id=client_id,
                # Empty means "all the client may have"; narrowed to the person on approval.
                scope=scope or "",
                interval_s=data["interval"],
                expires_at=utcnow() + timedelta(seconds=data["expires_in"]),
            )
        )


class _TokenLookup:
    """Find an access token (a JWT we signed, by jti) or a refresh token (by digest)."""

    server: Any

    def check_params(self, request: Any, client: ClientView) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("missing token")
        # An unknown token_type_hint is ignored (RFC 7009 section 2.2; RFC 7662 section 2.1
        # makes it a mere hint): authlib refused it as unsupported_token_type with a 401 and
        # no WWW-Authenticate. query_token looks the token up by its shape either way.

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        server = self.server
        if token_string.count(".") == 2 and token_type_hint != "refresh_token":
            try:
                claims = server.service.validator.verify(token_string)
            except InvalidToken:
                return None
            row = server.repo.access_token(claims["jti"])
            return TokenView("access_token", row, claims) if row is not None else None
        row = server.repo.refresh_token(digest(token_string))
        return TokenView("refresh_token", row) if row is not None else None


class Introspection(_TokenLookup, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH

    def check_permission(self, token: TokenView, client: ClientView, request: Any) -> bool:
        # A client sees only its own tokens; anything else is reported inactive.
        return token.check_client(client)

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        row = token.row
        body: dict[str, Any] = {
            "active": True,
            "client_id": row.client_id,
            "scope": row.scope,
            "exp": int(row.expires_at.timestamp()),
            "iat": int(
                row.created_at.timestamp()
                if token.kind == "refresh_token"
                else row.issued_at.timestamp()
            ),
            "iss": self.server.service.settings.issuer,
        }
        if token.kind == "access_token":
            c = token.claims
            body.update(
                token_type="Bearer",
                sub=c["sub"],
                aud=c["aud"],
                jti=c["jti"],
                team=c.get("team"),
                clearance=c.get("clearance"),
            )
        else:
            body["sub"] = row.user_id
        return body


class Revocation(_TokenLookup, RevocationEndpoint):
    CLIENT_AUTH_METHODS = ANY_CLIENT_AUTH

    def revoke_token(self, token: TokenView, request: Any) -> None:
        server = self.server
        if token.kind == "access_token":
            server.repo.revoke_access_token(token.row.jti)
            server.revoked_now([(token.row.jti, token.row.expires_at)])
        else:
            # RFC 7009 section 2.1: revoking a refresh token also ends the access tokens of
            # the same authorization.
            server.revoked_now(server.repo.revoke_grant(token.row.grant_id))
