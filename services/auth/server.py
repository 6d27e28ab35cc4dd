"""authlib's AuthorizationServer adapted to Starlette requests and a per-request sync session.

authlib ships no Starlette/FastAPI *server* integration, so the request adapter, response
shape and client-authentication methods live here. A server object is cheap and built per
request around that request's session, so no hook ever reaches for ambient state.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc9207 import IssuerParameter
from sqlalchemy.orm import Session

from services.auth import protocol
from services.auth.credentials import digest, secret_matches
from services.auth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    ClientView,
    DeviceAuthorization,
    DeviceGrant,
    Introspection,
    RefreshTokenGrant,
    Revocation,
    S256CodeChallenge,
    shown,
)
from services.auth.models import IssuedAccessToken, RefreshToken
from services.auth.repository import GrantRepository, Revoked
from services.auth.tokens import unverified_claims
from shared.db import utcnow
from shared.ids import new_id
from shared.security import Scope
from shared.settings import Settings

if TYPE_CHECKING:
    from services.auth.service import AuthService

REFRESH_TOKEN_TTL = timedelta(days=30)
# One answer to every failed client authentication, so it never says whether a client exists.
CLIENT_AUTH_FAILED = (
    "client authentication failed: unknown or disabled client, wrong or missing secret, "
    "or a method this client may not use (a public client sends only its client_id)"
)
# Compared against when a client_id is unknown, so both failures cost the same.
_DUMMY_DIGEST = digest("failcat-no-such-client")


class _Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """Built by the route (which awaits the form) and handed to authlib fully read."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args = dict(query)
        self._form = dict(form)
        # Parameters may come in the query (authorize GET) or the body (everything else).
        self.payload = _Payload([*query, *form])

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class OAuthResponse:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "location"]
        self.headers.append(("Location", value))

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


class _Issuer(IssuerParameter):
    """RFC 9207: authorization responses name their issuer (defeats mix-up attacks)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


# ---- client authentication that never says whether a client exists -----------------------


def _check_secret(query_client: Any, client_id: str | None, secret: str | None) -> Any:
    if not client_id or not secret:
        return None
    client = query_client(client_id)
    if client is None:
        # authlib's own methods answer "The client does not exist on this server." here;
        # we fail exactly as for a wrong secret, after the same amount of work.
        secret_matches(secret, _DUMMY_DIGEST)
        return None
    return client if client.check_client_secret(secret) else None


def _client_secret_basic(query_client: Any, request: OAuth2Request) -> Any:
    client_id, secret = extract_basic_authorization(request.headers)
    return _check_secret(query_client, client_id, secret)


def _client_secret_post(query_client: Any, request: OAuth2Request) -> Any:
    form = request.form
    return _check_secret(query_client, form.get("client_id"), form.get("client_secret"))


def _none(query_client: Any, request: OAuth2Request) -> Any:
    client_id = request.payload.client_id
    if not client_id or request.payload.data.get("client_secret"):
        return None
    if extract_basic_authorization(request.headers)[0]:
        return None
    # authlib then accepts it only if the client is public (check_endpoint_auth_method).
    return query_client(client_id)


class FailcatAuthorizationServer(AuthorizationServer):
    def __init__(self, service: AuthService, session: Session) -> None:
        super().__init__(scopes_supported=[s.value for s in Scope])
        self.service = service
        self.session = session
        self.repo = GrantRepository(session)
        self._clients: dict[str, ClientView | None] = {}
        self.register_token_generator("default", service.token_generator)
        self.register_client_auth_method("client_secret_basic", _client_secret_basic)
        self.register_client_auth_method("client_secret_post", _client_secret_post)
        self.register_client_auth_method("none", _none)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(DeviceGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_endpoint(DeviceAuthorization(self))
        self.register_extension(lambda server: _Issuer(service.settings.issuer)(server))

    # ---- authlib's integration points ---------------------------------------------------

    def query_client(self, client_id: str) -> ClientView | None:
        if client_id not in self._clients:
            row = self.repo.client(client_id)
            self._clients[client_id] = ClientView(row) if row and not row.disabled else None
        return self._clients[client_id]

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        self.store_token(token, request, grant_id=None)

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        response_type = request.payload.response_type
        if response_type in AuthorizationCodeGrant.RESPONSE_TYPES:
            return super().get_authorization_grant(request)
        # authlib's refusal passes its arguments swapped, so its description is the raw
        # response_type: empty when it is missing, and a 500 when it holds a quote or a
        # non-ASCII character (see `shown`). Back to the client only at a registered URI.
        client_id, uri = request.payload.client_id, request.payload.redirect_uri
        client = self.query_client(client_id) if client_id else None
        redirect_uri = (
            uri if client is not None and uri and client.check_redirect_uri(uri) else None
        )
        if not response_type:
            raise InvalidRequestError(
                "missing response_type (must be code)", redirect_uri=redirect_uri
            )
        raise UnsupportedResponseTypeError(
            response_type,
            description=f"response_type {shown(response_type)} is not supported: use code",
            redirect_uri=redirect_uri,
        )

    def validate_requested_scope(self, scope: str | None) -> None:
        # authlib's refusal says "invalid, unknown, or malformed" without naming the scope.
        unknown = [s for s in scope_to_list(scope) or [] if s not in self.scopes_supported]
        if unknown:
            known = " ".join(self.scopes_supported)
            raise InvalidScopeError(f"unknown scope: {shown(' '.join(unknown))} (known: {known})")

    def authenticate_client(
        self, request: OAuth2Request, methods: Any, endpoint: str = "token"
    ) -> Any:
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            # authlib's words list its method names ("The client cannot authenticate with
            # methods: [...]"), which tells a person holding a wrong secret nothing.
            error.description = CLIENT_AUTH_FAILED
            raise

    def create_token_response(self, request: Any = None) -> Any:
        # RFC 6749 section 3.2 and 5.2: a missing or repeated parameter is invalid_request
        # (authlib answered a missing grant_type as unsupported_grant_type, with no words).
        repeated = sorted(k for k, values in request.payload.datalist.items() if len(values) > 1)
        if repeated:
            error = InvalidRequestError(f"parameter given more than once: {shown(repeated[0])}")
            return self.handle_error_response(request, error)
        if not request.payload.grant_type:
            return self.handle_error_response(request, InvalidRequestError("missing grant_type"))
        return super().create_token_response(request)

    def get_token_grant(self, request: OAuth2Request) -> Any:
        try:
            return super().get_token_grant(request)
        except UnsupportedGrantTypeError as error:
            # authlib's has no description: name the value and what there is instead.
            error.description = (
                f"grant_type {shown(request.payload.grant_type or '')} is not supported: "
                f"use one of {', '.join(protocol.GRANT_TYPES)}"
            )
            raise

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def create_json_request(self, request: Any) -> Any:  # pragma: no cover - no JSON endpoints
        raise NotImplementedError

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    # ---- what the grants share ----------------------------------------------------------

    def store_token(self, token: dict, request: OAuth2Request, grant_id: str | None) -> None:
        """Record the JWT (for introspection and revocation) and the refresh token digest."""
        claims = unverified_claims(token["access_token"])
        user = request.user
        client_id = request.client.get_client_id()
        self.repo.add(
            IssuedAccessToken(
                jti=claims["jti"],
                client_id=client_id,
                subject=str(claims["sub"]),
                user_id=user.id if user is not None else None,
                scope=claims.get("scope") or "",
                grant_id=grant_id,
                issued_at=_from_epoch(claims["iat"]),
                expires_at=_from_epoch(claims["exp"]),
            )
        )
        refresh = token.get("refresh_token")
        if refresh and user is not None and grant_id is not None:
            self.repo.add(
                RefreshToken(
                    id=new_id(),
                    token_hash=digest(refresh),
                    client_id=client_id,
                    user_id=user.id,
                    scope=claims.get("scope") or "",
                    grant_id=grant_id,
                    expires_at=utcnow() + REFRESH_TOKEN_TTL,
                )
            )

    def revoked_now(self, revoked: Revoked) -> None:
        """Refuse these tokens in this process at once; other processes learn by polling."""
        self.service.revocations.add(revoked)


def _from_epoch(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def metadata(settings: Settings) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = settings.issuer
    auth_methods = ["client_secret_basic", "client_secret_post", "none"]
    return {
        "issuer": base,
        "authorization_endpoint": base + protocol.AUTHORIZE,
        "token_endpoint": base + protocol.TOKEN,
        "jwks_uri": base + protocol.JWKS,
        "introspection_endpoint": base + protocol.INTROSPECT,
        "revocation_endpoint": base + protocol.REVOKE,
        "device_authorization_endpoint": base + protocol.DEVICE_AUTHORIZATION,
        "scopes_supported": [s.value for s in Scope],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(protocol.GRANT_TYPES),
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods[:2],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": f"{base}/",
    }
