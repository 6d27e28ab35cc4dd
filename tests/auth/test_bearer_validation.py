"""What resource servers answer to bad bearer tokens and missing scopes (RFC 6750)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.auth.builders import bearer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


@pytest.fixture
def forge(app, settings):
    """Sign arbitrary claims/headers with the server's real current key."""
    ring = app.state.auth.ring()

    def make(header_extra: dict | None = None, drop: tuple = (), key=None, **claims) -> str:
        now = int(time.time())
        body = {
            "iss": settings.issuer,
            "aud": settings.audience,
            "sub": "svc",
            "exp": now + 300,
            "iat": now,
            "jti": f"j{time.time_ns()}",
            "client_id": "svc",
            "scope": "cases:read",
            "team": None,
            "clearance": "internal",
            **claims,
        }
        for name in drop:
            body.pop(name, None)
        header = {"alg": "ES256", "typ": "at+jwt", "kid": ring.signing_kid, **(header_extra or {})}
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(
            header, body, key or ring.signing_keys, algorithms=["ES256"], default_type=None
        )

    return make


def _invalid(resp) -> str:
    assert resp.status_code == 401, resp.text
    www = resp.headers["www-authenticate"]
    assert www.startswith('Bearer error="invalid_token"'), www
    return www


async def test_forged_but_correct_token_is_accepted(resource, forge):
    # The forge helper itself makes valid tokens; every case below changes one thing.
    assert (await resource.get("/cases", headers=bearer(forge()))).status_code == 200


async def test_missing_token(resource):
    resp = await resource.get("/cases")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="failcat"'
    basic = await resource.get("/cases", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.headers["www-authenticate"] == 'Bearer realm="failcat"'


@pytest.mark.parametrize(
    "value",
    ["Bearer", "Bearer abc", "Bearer a.b.c", "Bearer ....", "Bearer eyJhbGciOiJFUzI1NiJ9.e30"],
)
async def test_malformed_token(resource, value):
    _invalid(await resource.get("/cases", headers={"Authorization": value}))


async def test_expired_token(resource, forge):
    now = int(time.time())
    www = _invalid(
        await resource.get("/cases", headers=bearer(forge(exp=now - 120, iat=now - 1000)))
    )
    assert "expired" in www


async def test_the_leeway_covers_iat_not_exp(resource, forge):
    """Clock skew between the minting and the checking process: a token minted a few seconds
    "in the future" is accepted; one past its exp is not, as introspection says (RFC 7662)."""
    from services.auth.tokens import LEEWAY_S

    now = int(time.time())
    skewed = forge(iat=now + LEEWAY_S // 2)
    assert (await resource.get("/cases", headers=bearer(skewed))).status_code == 200
    just_expired = forge(exp=now - 1, iat=now - 600)
    assert "expired" in _invalid(await resource.get("/cases", headers=bearer(just_expired)))


async def test_not_yet_valid_token(resource, forge):
    now = int(time.time())
    _invalid(await resource.get("/cases", headers=bearer(forge(iat=now + 600, exp=now + 1200))))
    _invalid(await resource.get("/cases", headers=bearer(forge(nbf=now + 600))))


async def test_wrong_issuer(resource, forge):
    _invalid(await resource.get("/cases", headers=bearer(forge(iss="https://evil.example"))))


async def test_wrong_audience(resource, forge):
    _invalid(await resource.get("/cases", headers=bearer(forge(aud="someone-else"))))
    _invalid(await resource.get("/cases", headers=bearer(forge(drop=("aud",)))))


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti", "client_id", "iss"])
async def test_missing_required_claim(resource, forge, claim):
    _invalid(await resource.get("/cases", headers=bearer(forge(drop=(claim,)))))


async def test_bad_signature(resource, forge, app):
    token = forge()
    head, payload, sig = token.split(".")
    tampered_payload = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_payload["scope"] = "admin"
    tampered = f"{head}.{_b64(json.dumps(tampered_payload).encode())}.{sig}"
    _invalid(await resource.get("/cases", headers=bearer(tampered)))
    # A different key claiming our kid.
    other = KeySet(
        [ECKey.generate_key("P-256", parameters={"kid": app.state.auth.ring().signing_kid})]
    )
    _invalid(await resource.get("/cases", headers=bearer(forge(key=other))))


async def test_alg_none_is_refused(resource, app, settings):
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": "x",
        "exp": now + 300,
        "iat": now,
        "jti": "none-1",
        "client_id": "x",
        "scope": "admin",
    }
    for alg in ("none", "None", "NONE"):
        token = _raw(
            {"alg": alg, "typ": "at+jwt", "kid": app.state.auth.ring().signing_kid}, claims
        )
        _invalid(await resource.get("/cases", headers=bearer(token)))


async def test_hs256_keyed_with_the_public_key_is_refused(resource, app, settings, client):
    jwks = (await client.get("/oauth/jwks.json")).json()
    public = ECKey.import_key(jwks["keys"][-1])
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": "x",
        "exp": now + 300,
        "iat": now,
        "jti": "hs-1",
        "client_id": "x",
        "scope": "admin",
    }
    header = {"alg": "HS256", "typ": "at+jwt", "kid": public.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    for secret in (public.as_pem(private=False), json.dumps(jwks["keys"][-1]).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        _invalid(await resource.get("/cases", headers=bearer(f"{signing_input}.{_b64(mac)}")))


async def test_embedded_jwk_is_not_trusted(resource, forge):
    attacker = ECKey.generate_key("P-256", auto_kid=True)
    embedded = attacker.as_dict(private=False)
    # Signed by the attacker, who puts the matching public key in the header.
    token = forge(
        header_extra={"jwk": embedded, "kid": attacker.kid}, key=KeySet([attacker]), scope="admin"
    )
    _invalid(await resource.get("/cases", headers=bearer(token)))
    token = forge(header_extra={"jku": "https://evil.example/jwks.json"})
    _invalid(await resource.get("/cases", headers=bearer(token)))


async def test_typ_at_jwt_is_required(resource, forge):
    _invalid(await resource.get("/cases", headers=bearer(forge(header_extra={"typ": None}))))
    _invalid(await resource.get("/cases", headers=bearer(forge(header_extra={"typ": "JWT"}))))
    # An OpenID Connect ID token is not an access token even if signed by us.
    www = _invalid(
        await resource.get("/cases", headers=bearer(forge(header_extra={"typ": "JWT"}, nonce="n")))
    )
    assert "at+jwt" in www


async def test_unknown_clearance_is_refused(resource, forge):
    _invalid(await resource.get("/cases", headers=bearer(forge(clearance="top-secret"))))


async def test_missing_scope_is_403_naming_it(resource, token_for):
    token = await token_for("cases:read")
    resp = await resource.post("/cases", headers=bearer(token))
    assert resp.status_code == 403
    assert (
        resp.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="cases:write"'
    )
    assert "cases:write" in resp.json()["detail"]


async def test_admin_scope_passes_every_check(resource, token_for):
    token = await token_for("admin", clearance="restricted")
    assert (await resource.post("/cases", headers=bearer(token))).status_code == 200


async def test_validation_is_synchronous_and_local(app, token_for):
    token = await token_for("cases:read")
    principal = app.state.auth.authenticate(f"Bearer {token}")
    assert principal.scopes == frozenset({"cases:read"})
    assert principal.jti
