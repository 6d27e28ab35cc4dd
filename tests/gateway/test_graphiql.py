"""GraphiQL in development: `GET /graphql` from a browser loads without a token, names only
this server's assets (vendored, with their licences), signs a person in through the built-in
sign-in page with its public client, and is gone in production.
(tests/gateway/test_graphiql_browser.py drives the same page in a real browser.)"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from services.gateway.graphiql import ASSETS_DIR, ASSETS_PATH, GRAPHIQL_CLIENT_ID
from tests.auth.builders import make_user, pkce_pair, query_of, sign_in
from tests.conftest import auth_header
from tests.gateway.helpers import data, gql

HTML = {"Accept": "text/html,application/xhtml+xml"}
URL_ATTRIBUTE = re.compile(r"""\b(?:src|href|action)=["']?([^"' >]+)""")


def config_of(page: str) -> dict:
    found = re.search(
        r'<script id="failcat-config" type="application/json">(.*?)</script>', page, re.S
    )
    assert found, "the page carries its configuration"
    return json.loads(found[1])


async def test_the_page_opens_without_a_token(client):
    resp = await client.get("/graphql", headers=HTML)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert "<title>failcat GraphiQL</title>" in resp.text
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    config = config_of(resp.text)
    assert config["clientId"] == GRAPHIQL_CLIENT_ID
    assert config["authorizeUrl"] == "/oauth/authorize" and config["tokenUrl"] == "/oauth/token"


async def test_the_page_names_only_local_assets_and_they_are_served(client):
    page = (await client.get("/graphql", headers=HTML)).text
    urls = URL_ATTRIBUTE.findall(page)
    assert urls, "the page links its scripts and styles"
    markup = re.sub(r'<script id="failcat-config".*?</script>', "", page, flags=re.S)
    assert "://" not in markup, "the markup names no other origin"
    for url in urls:
        assert url.startswith(ASSETS_PATH + "/"), f"{url} is not one of this server's assets"
    names = {u.rsplit("/", 1)[1] for u in urls}
    assert {
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
        "failcat-graphiql.js",
    } <= names
    for url in urls:
        resp = await client.get(url)
        assert resp.status_code == 200, url
        assert resp.content == (ASSETS_DIR / urlsplit(url).path.rsplit("/", 1)[1]).read_bytes()
        kind = "javascript" if url.endswith(".js") else "css"
        assert kind in resp.headers["content-type"], (url, resp.headers["content-type"])


def test_vendored_assets_are_the_pinned_packages_with_their_licences():
    sums = (ASSETS_DIR / "SHA256SUMS").read_text().splitlines()
    listed = dict(reversed(line.split(maxsplit=1)) for line in sums)
    assert {
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "LICENSE.graphiql",
        "LICENSE.react",
        "LICENSE.react-dom",
    } <= set(listed)
    for name, digest in listed.items():
        actual = hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} differs from what vendor_graphiql.sh fetched"
    for licence in ("LICENSE.graphiql", "LICENSE.react", "LICENSE.react-dom"):
        assert "MIT License" in (ASSETS_DIR / licence).read_text()
    versions = (ASSETS_DIR / "VERSIONS").read_text()
    assert "graphiql 3.9.0" in versions and "react 18.3.1" in versions


def test_every_asset_is_package_data():
    """pyproject's package data ships each file the page serves (an installed failcat has
    them, not only a checkout)."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["services.gateway"]
    package = ASSETS_DIR.parents[1]  # services/gateway
    for path in ASSETS_DIR.iterdir():
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, p) for p in patterns), f"{relative} is not package data"


async def test_queries_still_need_a_token(client):
    # A GET carrying an operation is not the page: it is refused as before.
    resp = await client.get("/graphql", params={"query": "{ __typename }"}, headers=HTML)
    assert resp.status_code == 401
    resp = await client.post("/graphql", json={"query": "{ __typename }"})
    assert resp.status_code == 401


async def test_signing_in_as_the_page_does(client, app, settings):
    """The page's flow over HTTP: authorization code + PKCE with the public client, back to
    /graphql, the code exchanged without a secret, the token accepted by /graphql."""
    username, password = await make_user(app, ["curator"], team="payments-ml")
    verifier, challenge = pkce_pair()
    redirect = config_of((await client.get("/graphql", headers=HTML)).text)["redirectUri"]
    assert redirect == f"{settings.issuer}/graphql"
    params = {
        "response_type": "code",
        "client_id": GRAPHIQL_CLIENT_ID,
        "redirect_uri": redirect,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "tab-state",
    }
    resp = await sign_in(client, params, username, password)
    assert resp.status_code == 302, resp.text
    back = query_of(resp.headers["location"])
    assert resp.headers["location"].startswith(redirect + "?") and back["state"] == "tab-state"
    # Coming back, the page loads (with ?code=...) without a token too.
    assert (await client.get(resp.headers["location"], headers=HTML)).status_code == 200
    token = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": back["code"],
            "redirect_uri": redirect,
            "client_id": GRAPHIQL_CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    body = await gql(client, access, "{ severityRubric { grade } }")
    assert data(body)["severityRubric"]
    # The person's roles bound the token, not the client's every-scope allowance.
    assert "admin" not in token.json()["scope"].split()
    resp = await client.post(
        "/graphql",
        json={"query": "{ clients { clientId } }"},
        headers=auth_header(access),
    )
    assert resp.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_public_client_needs_its_verifier(client, app):
    username, password = await make_user(app, ["viewer"])
    verifier, challenge = pkce_pair()
    redirect = config_of((await client.get("/graphql", headers=HTML)).text)["redirectUri"]
    params = {
        "response_type": "code",
        "client_id": GRAPHIQL_CLIENT_ID,
        "redirect_uri": redirect,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
    }
    code = query_of((await sign_in(client, params, username, password)).headers["location"])
    wrong = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code["code"],
            "redirect_uri": redirect,
            "client_id": GRAPHIQL_CLIENT_ID,
            "code_verifier": verifier[::-1],
        },
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


@contextlib.asynccontextmanager
async def another_app(data_dir: Path, **settings_values: str) -> AsyncIterator[httpx.AsyncClient]:
    from services.gateway.app import create_app
    from shared.migrate import upgrade_async
    from shared.settings import Settings

    settings = Settings(data_dir=data_dir, **settings_values)
    await upgrade_async(settings.catalog_url)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as c:
            yield c


@pytest.fixture(scope="module")
async def production(tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    async with another_app(tmp_path_factory.mktemp("prod"), env="production") as c:
        yield c


async def test_an_issuer_that_cannot_take_a_redirect_offers_only_pasting(tmp_path):
    """Plain http on a host other than loopback cannot be a redirect URI: the server still
    starts, and the page offers pasting a token instead of signing in."""
    async with another_app(tmp_path, issuer="http://devbox.example:8000") as c:
        resp = await c.get("/graphql", headers=HTML)
        assert resp.status_code == 200
        config = config_of(resp.text)
        assert config["clientId"] is None and config["authorizeUrl"] is None


async def test_production_has_no_graphiql(production):
    resp = await production.get("/graphql", headers=HTML)
    assert resp.status_code == 404
    assert "GraphiQL" not in resp.text
    assert (await production.get(f"{ASSETS_PATH}/graphiql.min.js")).status_code == 404
    assert (await production.post("/graphql", json={"query": "{ __typename }"})).status_code == 401
