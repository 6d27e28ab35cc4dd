"""Signing keys: private files 0600, rotation without breaking issued tokens, one signer."""

from __future__ import annotations

import asyncio
import base64
import json
import stat

from tests.auth.builders import bearer, register


def _kid(token: str) -> str:
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))["kid"]


async def _token(client, c) -> str:
    resp = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
    )
    return resp.json()["access_token"]


async def test_private_keys_are_files_0600_in_embedded_mode(app, settings, backend):
    key_dir = settings.data_dir / "keys"
    if backend != "embedded":
        # With Postgres several hosts sign with one key, so it lives in the database.
        assert app.state.auth.key_store.keys_in_db
        return
    files = list(key_dir.glob("*.jwk.json"))
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(client, app, resource):
    auth = app.state.auth
    c = await register(app)
    before = await _token(client, c)
    old_kid = _kid(before)

    async with app.state.db.transaction() as s:
        new_kid = await auth.rotate_keys(s)
    await auth.refresh_keys()  # what the poll does within revocation_poll_s

    after = await _token(client, c)
    assert _kid(after) == new_kid != old_kid
    jwks = (await client.get("/oauth/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} >= {old_kid, new_kid}
    assert all(k["alg"] == "ES256" and k["use"] == "sig" for k in jwks["keys"])
    # Both tokens still work.
    assert (await resource.get("/cases", headers=bearer(before))).status_code == 200
    assert (await resource.get("/cases", headers=bearer(after))).status_code == 200
    # Only the current key signs, however many tokens are issued.
    kids = {_kid(await _token(client, c)) for _ in range(10)}
    assert kids == {new_kid}


async def test_unknown_kid_triggers_a_key_refresh(client, app, settings, resource):
    """Another process rotated: this one meets the new kid before its poll and refreshes."""
    from services.auth.service import AuthService
    from shared.db import Database

    db = Database(settings.catalog_url)
    signer = await AuthService.start(settings, db)
    try:
        async with db.transaction() as s:
            await signer.rotate_keys(s)
        await signer.refresh_keys()
        c = await register(app)
        # Issued by the other process with the new key.
        from services.auth.grants import ClientView
        from services.auth.models import OAuthClient

        async with db.transaction() as s:
            row = await s.get(OAuthClient, c.client_id)
            token = signer.token_generator.access_token_generator(
                client=ClientView(row),
                grant_type="client_credentials",
                user=None,
                scope="cases:read",
            )
        auth = app.state.auth
        auth._last_kid_refresh = 0.0
        first = await resource.get("/cases", headers=bearer(token))
        if first.status_code == 401:  # the poll had not run yet: refresh was triggered
            assert "unknown signing key" in first.headers["www-authenticate"]
            for _ in range(50):
                await asyncio.sleep(0.02)
                if _kid(token) in auth.ring().verify_keys:
                    break
        assert (await resource.get("/cases", headers=bearer(token))).status_code == 200
    finally:
        await signer.close()
        await db.dispose()


async def test_keyring_signer_holds_exactly_one_key(app):
    ring = app.state.auth.ring()
    assert len(ring.signing_keys.keys) == 1
    assert ring.signing_keys.keys[0].kid == ring.signing_kid
