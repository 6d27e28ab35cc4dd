"""Signing a person in to the pages: OAuth 2.0 authorization code + PKCE (RFC 7636) with a
built-in public client, registered like GraphiQL's (`AuthService.ensure_public_client`).

The server side of the pages runs the flow: /ui/signin keeps the verifier and state in a
short-lived HttpOnly cookie and sends the browser to the authorization server's sign-in page;
/ui/callback checks the state and exchanges the code (with the verifier, no secret) at the
token endpoint. The access token then lives in an HttpOnly cookie scoped to /ui, so page
scripts never hold it; /graphql never reads cookies, so the cookie cannot be used for a
cross-site request to the API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from typing import Any

from starlette.requests import Request

from services.auth import protocol
from shared.errors import BadUserInput

log = logging.getLogger("failcat.ui")

UI_CLIENT_ID = "failcat-ui"
UI_CLIENT_NAME = "failcat web pages"
CALLBACK_PATH = "/ui/callback"
TOKEN_COOKIE = "failcat_ui_token"
# The refresh token (the public client may use the refresh_token grant): an expired access
# token is renewed by /ui/refresh without asking for the password again.
REFRESH_COOKIE = "failcat_ui_refresh"
REFRESH_COOKIE_TTL_S = 30 * 86400  # the authorization server's refresh token lifetime
FLOW_COOKIE = "failcat_ui_signin"
FLOW_TTL_S = 600  # time to complete the sign-in page


def redirect_uri(issuer: str) -> str:
    return issuer.rstrip("/") + CALLBACK_PATH


async def sign_in_available(request: Request) -> bool:
    """Register the pages' public client on first use (idempotent, like GraphiQL's). False when
    this process has no authorization server or the issuer cannot take a redirect URI."""
    state = request.app.state
    known = getattr(state, "ui_sign_in", None)
    if known is not None:
        return known
    if getattr(state, "auth", None) is None or not getattr(state, "ui_serves_oauth", False):
        state.ui_sign_in = False
        return False
    try:
        await state.auth.ensure_public_client(
            UI_CLIENT_ID, UI_CLIENT_NAME, redirect_uri(state.settings.issuer)
        )
    except BadUserInput as exc:
        log.warning("the pages' sign-in is off: %s", exc.message)
        state.ui_sign_in = False
        return False
    state.ui_sign_in = True
    return True


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# The sign-in flow's own steps: never a place to come back to after signing in (the header's
# "Sign in" link on "Signed out" or "Sign-in failed" names them as `next`).
FLOW_PATHS = ("/ui/signin", CALLBACK_PATH, "/ui/refresh", "/ui/signout")


def safe_next(target: str | None) -> str:
    """Only a path of these pages: never an absolute URL (an open redirect), nor a step of
    the sign-in flow itself."""
    if not target or not target.startswith("/ui/") or target.startswith("//"):
        return "/ui/"
    if target.split("?", 1)[0].rstrip("/") in FLOW_PATHS:
        return "/ui/"
    return target


def start(issuer: str, next_path: str) -> tuple[str, str]:
    """The authorization URL and the flow cookie's value."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    from urllib.parse import urlencode

    query = urlencode(
        {
            "response_type": "code",
            "client_id": UI_CLIENT_ID,
            "redirect_uri": redirect_uri(issuer),
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
            "state": state,
        }
    )
    flow = json.dumps({"verifier": verifier, "state": state, "next": safe_next(next_path)})
    return f"{protocol.AUTHORIZE}?{query}", base64.urlsafe_b64encode(flow.encode()).decode()


def read_flow(cookie: str | None) -> dict[str, Any] | None:
    if not cookie:
        return None
    try:
        flow = json.loads(base64.urlsafe_b64decode(cookie.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(flow, dict) or not all(
        isinstance(flow.get(k), str) for k in ("verifier", "state", "next")
    ):
        return None
    return flow


def token_request(issuer: str, code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(issuer),
        "client_id": UI_CLIENT_ID,
        "code_verifier": verifier,
    }


def cookie_options(request: Request, path: str = "/ui") -> dict[str, Any]:
    # Lax, not Strict: a shared link opened from another site arrives signed in; every /ui
    # route that changes anything is a POST, which Lax does not send cross-site.
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https",
        "path": path,
    }
