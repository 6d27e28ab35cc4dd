"""TokenValidator remembers a verified signature per exact token and key, never beyond them:
a token keeps working without a second ECDSA verify, a key that left the ring or changed
ends it, and expiry and revocation are still checked on every use."""

from __future__ import annotations

import time

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet

from services.auth import tokens
from services.auth.keys import KeyRing
from services.auth.tokens import InvalidToken, TokenValidator

ISSUER, AUDIENCE = "https://failcat.test", "failcat-api"


def _ring(key: ECKey, kid: str = "k1") -> KeyRing:
    return KeyRing(signing_kid=kid, signing_keys=KeySet([key]), verify_keys={kid: key})


def _token(key: ECKey, kid: str = "k1", exp_in: int = 300, jti: str = "j1") -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc",
        "client_id": "svc",
        "scope": "cases:read",
        "exp": now + exp_in,
        "iat": now,
        "jti": jti,
    }
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    return jwt.encode(header, claims, key, algorithms=["ES256"], default_type=None)


@pytest.fixture
def counted_verifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many signature checks ran (the real joserfc call, counted)."""
    calls = [0]
    real = jws.deserialize_compact

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(tokens.jws, "deserialize_compact", counting)
    return calls


def test_a_token_is_verified_once_and_still_checked_on_every_use(counted_verifies):
    key = ECKey.generate_key("P-256")
    state = {"ring": _ring(key), "revoked": {}}
    validator = TokenValidator(
        ISSUER, AUDIENCE, lambda: state["ring"], lambda: state["revoked"], lambda: None
    )
    token = _token(key)
    first = validator.authenticate(f"Bearer {token}")
    again = validator.authenticate(f"Bearer {token}")
    assert first == again and counted_verifies[0] == 1

    state["revoked"] = {"j1": time.time() + 300}
    with pytest.raises(InvalidToken, match="revoked"):
        validator.authenticate(f"Bearer {token}")

    # The same kid now names another key: the remembered verify does not carry over.
    other = ECKey.generate_key("P-256")
    state["ring"], state["revoked"] = _ring(other), {}
    with pytest.raises(InvalidToken, match="bad signature"):
        validator.authenticate(f"Bearer {token}")
    # The kid left the ring altogether.
    state["ring"] = _ring(other, kid="k2")
    with pytest.raises(InvalidToken, match="unknown signing key"):
        validator.authenticate(f"Bearer {token}")


def test_an_expired_token_is_refused_even_when_its_signature_was_remembered(
    counted_verifies, monkeypatch: pytest.MonkeyPatch
):
    key = ECKey.generate_key("P-256")
    validator = TokenValidator(ISSUER, AUDIENCE, lambda: _ring(key), dict, lambda: None)
    token = _token(key, exp_in=5)
    validator.authenticate(f"Bearer {token}")
    later = time.time() + 5 + tokens.LEEWAY_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken, match="expired"):
        validator.authenticate(f"Bearer {token}")
    assert counted_verifies[0] == 1


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS_KEPT", 3)
    key = ECKey.generate_key("P-256")
    validator = TokenValidator(ISSUER, AUDIENCE, lambda: _ring(key), dict, lambda: None)
    for i in range(10):
        validator.authenticate(f"Bearer {_token(key, jti=f'j{i}')}")
    assert len(validator._verified) == 3
