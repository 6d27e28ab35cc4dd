"""GraphiQL in a browser, in development: the page at `GET /graphql` (Accept: text/html), its
assets, and how it signs a person in.

The page loads without a token (it is static and holds no data); every query it sends carries
the token the person chose: one from signing in (authorization code + PKCE through the built-in
sign-in page, with the public client `GRAPHIQL_CLIENT_ID`), or one pasted in. Its assets are
vendored into static/graphiql/ from the npm registry (infra/scripts/vendor_graphiql.sh, pinned
versions, their licences beside them) and served from `ASSETS_PATH`: the page names no other
origin, and its Content-Security-Policy allows none. In production neither exists (404).
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from services.auth import protocol
from shared.errors import BadUserInput

log = logging.getLogger("failcat.graphiql")

ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"
ASSETS_PATH = "/graphiql/assets"
GRAPHIQL_CLIENT_ID = "failcat-graphiql"

# Scripts and styles from this origin only (GraphiQL sets inline styles on its panes).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

DEFAULT_QUERY = """# Welcome to failcat's GraphQL API.
# Sign in (or paste an access token) above, then run a query with Ctrl-Enter.

{
  search(query: "severity:<=S2", facets: ["failure_mode"], first: 5) {
    total
    hits { case { id title severity } }
    facets { field buckets { value count } }
  }
}
"""


def redirect_uri(issuer: str) -> str:
    """Where the sign-in page sends the person back: this page, at the issuer's origin."""
    return issuer.rstrip("/") + "/graphql"


def wants_page(request: HTTPConnection) -> bool:
    """A browser opening /graphql (strawberry's own test: GET, HTML accepted, no `query`)."""
    if request.scope["method"] != "GET" or "query" in request.query_params:
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "*/*" in accept


def page(settings: Any, sign_in: bool) -> HTMLResponse:
    """sign_in: this process serves the authorization server (role all), so the page offers
    the PKCE sign-in; otherwise only pasting a token."""
    config = {
        "graphqlUrl": "/graphql",
        "authorizeUrl": protocol.AUTHORIZE if sign_in else None,
        "tokenUrl": protocol.TOKEN,
        "clientId": GRAPHIQL_CLIENT_ID if sign_in else None,
        "redirectUri": redirect_uri(settings.issuer),
        "defaultQuery": DEFAULT_QUERY,
    }
    # Inside <script type=application/json> only "</" could end the element early.
    data = json.dumps(config).replace("</", "<\\/")
    asset = f"{ASSETS_PATH}/"
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>failcat GraphiQL</title>
<link rel="stylesheet" href="{escape(asset)}graphiql.min.css">
<link rel="stylesheet" href="{escape(asset)}failcat-graphiql.css">
</head>
<body>
<header id="failcat-bar" aria-label="Access token">
  <strong>failcat</strong>
  <span id="failcat-status" role="status">Not signed in.</span>
  <button id="failcat-sign-in" type="button" hidden>Sign in</button>
  <form id="failcat-paste" hidden>
    <label for="failcat-token">or paste an access token</label>
    <input id="failcat-token" name="token" type="password" autocomplete="off"
      placeholder="eyJ...">
    <button type="submit">Use token</button>
  </form>
  <button id="failcat-sign-out" type="button" hidden>Sign out</button>
</header>
<main id="graphiql">Loading GraphiQL...</main>
<script id="failcat-config" type="application/json">{data}</script>
<script src="{escape(asset)}react.production.min.js"></script>
<script src="{escape(asset)}react-dom.production.min.js"></script>
<script src="{escape(asset)}graphiql.min.js"></script>
<script src="{escape(asset)}failcat-graphiql.js"></script>
</body>
</html>
"""
    return HTMLResponse(body, headers=SECURITY_HEADERS)


async def ensure_sign_in(auth: Any, settings: Any) -> bool:
    """Register GraphiQL's public client (once; its redirect URI follows the issuer). False,
    and the page offers only pasting a token, when the issuer cannot be a redirect URI (plain
    http on a host other than loopback)."""
    try:
        await auth.ensure_public_client(
            GRAPHIQL_CLIENT_ID, "GraphiQL", redirect_uri(settings.issuer)
        )
    except BadUserInput as exc:
        log.warning("GraphiQL sign-in is off (paste a token instead): %s", exc.message)
        return False
    return True


def assets() -> StaticFiles:
    return StaticFiles(directory=ASSETS_DIR)
