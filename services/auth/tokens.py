"""JWT access tokens (RFC 9068): minting with authlib's generator, validating locally.

Validation is what every API request pays for, so it runs synchronously against an in-memory
key ring and revocation set that the service's background poll keeps fresh; it never touches
the database or the network.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jws
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from services.auth.credentials import new_secret
from services.auth.keys import ALG, KeyRing
from shared.errors import Unauthenticated
from shared.security import Principal, Sensitivity

# Clock skew tolerated between the processes that mint and check tokens: on `iat` (a token
# minted by a process whose clock runs ahead is not "issued in the future"), never on `exp`.
# A token is dead at its exp everywhere: introspection (RFC 7662) and a subscription's recheck
# say so then, and the revocation set forgets a revoked jti then; a leeway on exp let a token
# work for LEEWAY_S after introspection called it inactive, a revoked one included.
LEEWAY_S = 30
TYP_VALUES = frozenset({"at+jwt", "application/at+jwt"})
# Headers that tell a verifier where to find a key. We only ever verify with our own keys, so
# a token carrying one of these was not minted here (the "embedded jwk" class of attacks).
KEY_LOCATING_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"})


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """authlib's RFC 9068 generator, pinned to failcat's issuer, audience and current key."""

    def __init__(self, issuer: str, audience: str, ttl_s: int, ring: Callable[[], KeyRing]):
        super().__init__(
            issuer=issuer,
            alg=ALG,
            refresh_token_generator=lambda **_: new_secret(),
            expires_generator=lambda client, grant_type: ttl_s,
        )
        self.audience = audience
        self._ring = ring

    def get_jwks(self) -> Any:
        return self._ring().signing_keys

    def get_audiences(self, client: Any, user: Any, scope: Any) -> str:
        # authlib defaults the audience to the client_id; our resource servers expect the
        # configured audience, so the two are set from the same setting explicitly.
        return self.audience

    def get_jti(self, client: Any, grant_type: Any, user: Any, scope: Any) -> str:
        return new_secret(16)

    def get_extra_claims(self, client: Any, grant_type: Any, user: Any, scope: Any) -> dict:
        if user is not None:
            # A person's token sees what both the person and the client may see.
            team = user.team
            clearance = min(
                Sensitivity(user.clearance), Sensitivity(client.clearance), key=_rank
            ).value
        else:
            team, clearance = client.team, client.clearance
        # Display names, so what the caller writes can name it (revisions, audit) without a
        # lookup: the client's name (RFC 7591 `client_name`) and the person's username.
        names = {"client_name": client.row.name}
        if user is not None:
            names["preferred_username"] = user.username
        return {"team": team, "clearance": clearance, **names}


def _rank(s: Sensitivity) -> int:
    return s.rank


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a token this process has just minted (no verification needed)."""
    return json.loads(_b64decode(token.split(".")[1]))


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class InvalidToken(Unauthenticated):
    def __init__(self, description: str) -> None:
        super().__init__(f"invalid_token: {description}")
        self.description = description
        self.www_authenticate = f'Bearer error="invalid_token", error_description="{description}"'


class MissingToken(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("a bearer token is required")
        self.www_authenticate = 'Bearer realm="failcat"'


# Verified signatures remembered (oldest forgotten first): a few per live client.
VERIFIED_TOKENS_KEPT = 4096


class _ClaimsRegistry(JWTClaimsRegistry):
    """joserfc's registry, its leeway kept off `exp` (see LEEWAY_S)."""

    def validate_exp(self, value: object) -> None:
        super().validate_exp(value)  # the type, and the check with the leeway
        if value <= self.now:  # type: ignore[operator]  a number: checked above
            raise ExpiredTokenError("exp")


class TokenValidator:
    """Checks a bearer JWT against the cached key ring; knows nothing about the database."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        ring: Callable[[], KeyRing],
        revoked: Callable[[], dict[str, float]],
        on_unknown_kid: Callable[[], None],
    ) -> None:
        self._ring = ring
        self._revoked = revoked
        self._on_unknown_kid = on_unknown_kid
        # token -> (the key that verified it, its claims): _verified_claims.
        self._verified: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._claims = _ClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )

    def authenticate(self, authorization_header: str | None) -> Principal:
        if not authorization_header:
            raise MissingToken()
        scheme, _, token = authorization_header.partition(" ")
        if scheme.lower() != "bearer":
            raise MissingToken()
        token = token.strip()
        if not token:
            raise InvalidToken("malformed bearer token")
        claims = self.verify(token)
        if claims["jti"] in self._revoked():
            raise InvalidToken("token revoked")
        return principal_from_claims(claims)

    def verify(self, token: str) -> dict[str, Any]:
        """Signature, header and claims; not revocation (introspection reports that itself)."""
        header = _header(token)
        if header.get("alg") != ALG:
            # Pinning the one algorithm we sign with closes `alg: none` and the HS256-keyed-
            # with-our-public-key confusion before any key is even looked up.
            raise InvalidToken(f"unsupported algorithm, expected {ALG}")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in TYP_VALUES:
            raise InvalidToken('typ must be "at+jwt"')
        if KEY_LOCATING_HEADERS.intersection(header):
            raise InvalidToken("key-locating or critical header parameters are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("missing kid")
        key = self._ring().verify_keys.get(kid)
        if key is None:
            self._on_unknown_kid()
            raise InvalidToken("unknown signing key")
        claims = self._verified_claims(token, key)
        try:
            self._claims.validate(claims)
        except JoseError as exc:
            raise InvalidToken(_claim_problem(exc)) from exc
        if not isinstance(claims.get("scope", ""), str):
            raise InvalidToken("scope must be a string")
        return claims

    def _verified_claims(self, token: str, key: Any) -> dict[str, Any]:
        """The claims of a token whose signature `key` verifies. A client sends the same token
        for its whole life, so the signature check (an ECDSA verify, most of a token's cost)
        is remembered per exact token string and key object: a key that left the ring (rotated
        out, revoked) no longer matches, and the claims (expiry above all) are still checked
        on every use by the caller."""
        known = self._verified.get(token)
        if known is not None and known[0] is key:
            return dict(known[1])
        try:
            payload = jws.deserialize_compact(token, key, algorithms=[ALG]).payload
            claims = json.loads(payload)
        except (JoseError, ValueError) as exc:
            raise InvalidToken("bad signature") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("claims are not a JSON object")
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (key, claims)
        return dict(claims)


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken("malformed token header") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed token header")
    return header


def _claim_problem(exc: JoseError) -> str:
    name = type(exc).__name__
    if name == "ExpiredTokenError":
        return "token expired"
    # joserfc's descriptions name the claim ("Invalid claim: 'aud'"); quotes would break the
    # WWW-Authenticate quoted-string.
    return str(exc.description or exc.error).replace('"', "'")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        clearance = Sensitivity(claims.get("clearance", Sensitivity.INTERNAL.value))
    except ValueError as exc:
        raise InvalidToken("unknown clearance") from exc
    scope = claims.get("scope") or ""
    return Principal(
        subject=str(claims["sub"]),
        client_id=str(claims["client_id"]),
        scopes=frozenset(scope.split()),
        team=claims.get("team"),
        clearance=clearance,
        jti=str(claims["jti"]),
        expires_at=float(claims["exp"]),
        name=_display_name(claims),
    )


def _display_name(claims: dict[str, Any]) -> str | None:
    """A person by username, else the client by name; None for tokens minted without them."""
    for key in ("preferred_username", "client_name"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def now_s() -> float:
    return time.time()
