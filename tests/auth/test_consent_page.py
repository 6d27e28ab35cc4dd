"""The authorization (consent) page says in words what each scope a client asks for lets it
do, with the scope's name beside it, whether the client names the scopes or gets all its own."""

from __future__ import annotations

import re
from html import unescape

import pytest

from services.auth.pages import SCOPE_DESCRIPTIONS
from shared.security import Scope
from tests.auth.builders import pkce_pair, register

REDIRECT = "https://app.example/cb"
CLIENT_SCOPES = ["cases:read", "cases:write", "plans:read", "audit:read", "exports:create"]


def listed(html: str) -> list[str]:
    """The items of the page's scope list, as text."""
    items = re.findall(r"<li>(.*?)</li>", html)
    return [unescape(re.sub(r"<[^>]+>", "", item)) for item in items]


@pytest.mark.parametrize("asked", [["cases:read", "exports:create"], None])
async def test_each_asked_scope_is_described_in_words(client, app, asked):
    c = await register(
        app,
        scopes=CLIENT_SCOPES,
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT],
    )
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": c.client_id,
        "redirect_uri": REDIRECT,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if asked:
        params["scope"] = " ".join(asked)
    page = await client.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    items = listed(page.text)
    expected = asked or sorted(CLIENT_SCOPES)  # none asked: all the client's
    assert items == [f"{SCOPE_DESCRIPTIONS[s]} ({s})" for s in expected], items
    # The list is what the client asks for, not what the person will grant.
    assert "never gets more than your own account may do" in page.text


def test_every_scope_has_words():
    assert set(SCOPE_DESCRIPTIONS) == {s.value for s in Scope}
