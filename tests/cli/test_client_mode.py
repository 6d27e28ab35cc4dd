"""Client mode: the CLI drives a running server over HTTP from any directory, with client
credentials or a `failcat login` device-flow token cached per user."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import stat
import time

import httpx
import orjson

from services.cli import credentials
from services.cli import ingest as cli_ingest
from tests.catalog.builders import unique
from tests.cli.conftest import CLI, clean_env, failcat
from tests.corpus import aiid_cases

CSRF_RE = re.compile(r"name=csrf_token value='([^']+)'")
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


async def _client(server, elsewhere, scopes: str, *extra: str) -> dict[str, str]:
    created = await failcat(
        "clients",
        "create",
        "--name",
        "cli-test",
        "--scopes",
        scopes,
        *extra,
        cwd=elsewhere,
        env=server.operator_env,
    )
    assert created.code == 0, created.err
    return json.loads(created.out)


async def _indexed(server, query: str, expected: int, env: dict[str, str], cwd) -> dict:
    for _ in range(100):
        result = await failcat("search", query, "--json", "--url", server.url, cwd=cwd, env=env)
        assert result.code == 0, result.err
        body = json.loads(result.out)
        if body["total"] >= expected:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{query!r}: {body['total']} hits, expected {expected}")


async def test_ingest_and_search_with_client_credentials(server, elsewhere):
    creds = await _client(server, elsewhere, "cases:ingest cases:read", "--team", "cli-team")
    env = clean_env(
        FAILCAT_URL=server.url,
        FAILCAT_CLIENT_ID=creds["client_id"],
        FAILCAT_CLIENT_SECRET=creds["client_secret"],
    )
    cases = unique(aiid_cases(250))
    for c in cases:
        c["tags"] = ["cli-remote"]
    lines = [orjson.dumps(c) for c in cases]
    lines[1] = b'{"model": {"name": "m", "version": "1"}, "data_source": "s", "confidence": 3}'
    path = elsewhere / "cases.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = await failcat("ingest", "cases.ndjson", "--batch", "100", cwd=elsewhere, env=env)
    assert result.code == 1
    assert json.loads(result.out) == {
        "created": 249,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 1,
        "sampled_out": 0,
    }
    assert "failcat: cases.ndjson:2: confidence: Input should be less than or equal to 1" in (
        result.err
    )
    assert "ingested 100/250" in result.err and "ingested 250/250" in result.err
    # Nothing local was created: the server holds the cases.
    assert sorted(p.name for p in elsewhere.iterdir()) == ["cases.ndjson"]

    body = await _indexed(server, "tags:cli-remote", 249, env, elsewhere)
    assert body["total"] == 249
    assert {h["case"]["team"] for h in body["hits"]} == {"cli-team"}
    table = await failcat("search", "tags:cli-remote", "--first", "3", cwd=elsewhere, env=env)
    assert table.code == 0
    assert table.out.splitlines()[0] == "249 cases"
    assert sum("incident-classifier@1." in line for line in table.out.splitlines()) == 3

    # Again: every case is a duplicate, nothing is stored twice.
    again = await failcat("ingest", "cases.ndjson", cwd=elsewhere, env=env)
    assert json.loads(again.out)["duplicate"] == 249

    # A bad query is the server's one-line answer, exit 2.
    bad = await failcat("search", "severity:S9", cwd=elsewhere, env=env)
    assert bad.code == 2
    assert bad.err.startswith("failcat: ") and "severity" in bad.err
    assert len(bad.err.splitlines()) == 1

    # Wrong credentials and an unreachable server: one line each.
    wrong = dict(env, FAILCAT_CLIENT_SECRET="nope")
    refused = await failcat("search", "x", cwd=elsewhere, env=wrong)
    assert refused.code == 2
    assert refused.err.startswith("failcat: FAILCAT_CLIENT_ID/FAILCAT_CLIENT_SECRET refused")
    gone = await failcat("search", "x", "--url", "http://127.0.0.1:9", cwd=elsewhere, env=env)
    assert gone.code == 2 and gone.err.startswith("failcat: cannot reach http://127.0.0.1:9")


async def test_scopes_and_visibility_apply_to_the_cli(server, elsewhere):
    reader = await _client(server, elsewhere, "cases:read", "--team", "other-team")
    env = clean_env(
        FAILCAT_URL=server.url,
        FAILCAT_CLIENT_ID=reader["client_id"],
        FAILCAT_CLIENT_SECRET=reader["client_secret"],
    )
    path = elsewhere / "one.json"
    path.write_bytes(orjson.dumps(unique(aiid_cases(1))))
    result = await failcat("ingest", "one.json", cwd=elsewhere, env=env)
    assert result.code == 2
    assert "insufficient_scope: requires cases:ingest" in result.err


async def _approve(url: str, user_code: str, username: str, password: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/oauth/device", params={"user_code": user_code})
        csrf = CSRF_RE.search(page.text).group(1)
        resp = await http.post(
            "/oauth/device",
            data={
                "user_code": user_code,
                "username": username,
                "password": password,
                "csrf_token": csrf,
                "decision": "allow",
            },
        )
        assert resp.status_code == 200, resp.text


async def test_login_device_flow_cached_per_user_with_refresh_and_logout(
    server, elsewhere, tmp_path, monkeypatch
):
    public = await _client(
        server,
        elsewhere,
        "cases:read cases:ingest",
        "--public",
        "--grant-types",
        f"{DEVICE} refresh_token",
    )
    username = f"ada-{os.getpid()}-{time.monotonic_ns()}"
    password = "correct horse battery staple"
    made = await failcat(
        "users",
        "create",
        "--username",
        username,
        "--roles",
        "curator",
        "--password-stdin",
        cwd=elsewhere,
        env=server.operator_env,
        stdin=password + "\n",
    )
    assert made.code == 0, made.err
    home = tmp_path / "config"
    env = clean_env(XDG_CONFIG_HOME=str(home))

    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "login",
        "--url",
        server.url,
        "--client-id",
        public["client_id"],
        cwd=elsewhere,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    first = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
    assert first.startswith(f"To sign in, open {server.url}/oauth/device?user_code=")
    second = (await proc.stderr.readline()).decode()
    user_code = second.rsplit(" ", 1)[-1].strip(" )\n")
    await _approve(server.url, user_code, username, password)
    rest = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    assert await proc.wait() == 0, rest
    assert f"signed in to {server.url}" in rest

    path = home / "failcat" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = json.loads(path.read_text())[server.url]
    assert set(entry["scope"].split()) == {"cases:read", "cases:ingest"}

    search = await failcat("search", "anything", "--url", server.url, cwd=elsewhere, env=env)
    assert search.code == 0, search.err

    # An expired access token is refreshed (and the rotated refresh token saved).
    stale = json.loads(path.read_text())
    stale[server.url]["expires_at"] = 0
    path.write_text(json.dumps(stale))
    search = await failcat("search", "anything", "--url", server.url, cwd=elsewhere, env=env)
    assert search.code == 0, search.err
    refreshed = json.loads(path.read_text())[server.url]
    assert refreshed["refresh_token"] != entry["refresh_token"]
    assert refreshed["expires_at"] > time.time()

    # Two commands at once with an expired token: one refreshes, the other uses its token
    # (spending the same rotating refresh token twice would end the sign-in).
    stale = json.loads(path.read_text())
    stale[server.url]["expires_at"] = 0
    path.write_text(json.dumps(stale))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    with credentials.locked():  # both commands read the stale entry, then queue for the lock
        runs = [
            asyncio.create_task(
                failcat("search", "anything", "--url", server.url, cwd=elsewhere, env=env)
            )
            for _ in range(2)
        ]
        await asyncio.sleep(4)
        assert not any(r.done() for r in runs)
    both = await asyncio.gather(*runs)
    assert [r.code for r in both] == [0, 0], [r.err for r in both]
    refreshed = json.loads(path.read_text())[server.url]
    stale[server.url]["expires_at"] = 0
    stale[server.url]["refresh_token"] = refreshed["refresh_token"]
    stale[server.url]["access_token"] = refreshed["access_token"]
    path.write_text(json.dumps(stale))
    search = await failcat("search", "anything", "--url", server.url, cwd=elsewhere, env=env)
    assert search.code == 0, search.err  # the sign-in survived
    refreshed = json.loads(path.read_text())[server.url]

    out = await failcat("logout", "--url", server.url, cwd=elsewhere, env=env)
    assert out.code == 0 and f"signed out of {server.url}" in out.err
    assert "did not confirm" not in out.err
    assert server.url not in json.loads(path.read_text())
    after = await failcat("search", "anything", "--url", server.url, cwd=elsewhere, env=env)
    assert after.code == 2
    assert after.err == (
        f"failcat: not signed in to {server.url}: run `failcat login --url {server.url}`, "
        "or set FAILCAT_CLIENT_ID and FAILCAT_CLIENT_SECRET\n"
    )
    # The refresh token was revoked: the cached copy would not work either.
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{server.url}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refreshed["refresh_token"],
                "client_id": public["client_id"],
            },
        )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


async def test_a_request_over_the_servers_limits_is_split_and_an_oversized_item_is_invalid(
    server, elsewhere, monkeypatch
):
    """A case over the server's 20 MB body limit made the whole run stop with 'request body
    is larger than the limit' (no line; the other cases of its batch not stored either), as
    did --batch above the server's 10,000 items per request. A 413 now splits the request in
    halves, and an item too large on its own is an invalid item named by its line."""
    creds = await _client(server, elsewhere, "cases:ingest")
    env = clean_env(
        FAILCAT_URL=server.url,
        FAILCAT_CLIENT_ID=creds["client_id"],
        FAILCAT_CLIENT_SECRET=creds["client_secret"],
    )
    cases = unique(aiid_cases(30))
    cases[7]["input"] = {
        "transcript": cases[7]["summary"] * (21_000_000 // len(cases[7]["summary"]))
    }
    path = elsewhere / "cases.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(c) for c in cases) + b"\n")
    result = await failcat(
        "ingest", "cases.ndjson", "--error-file", "refused.ndjson", cwd=elsewhere, env=env
    )
    assert result.code == 1, result.err
    assert json.loads(result.out) == {
        "created": 29, "duplicate": 0, "conflict": 0, "invalid": 1, "sampled_out": 0,
    }  # fmt: skip
    assert "failcat: cases.ndjson:8: too large to send (" in result.err, result.err
    assert "request body is larger than the limit of 20971520 bytes" in result.err
    [kept] = [orjson.loads(x) for x in (elsewhere / "refused.ndjson").read_bytes().splitlines()]
    assert kept["external_id"] == cases[7]["external_id"] and kept["_meta"]["line"] == 8

    # Without the CLI's own 16 MB split the server refuses the whole request: halves are sent
    # until the item is alone, and everything else is answered (duplicates of the run above).
    monkeypatch.setenv("FAILCAT_CLIENT_ID", creds["client_id"])
    monkeypatch.setenv("FAILCAT_CLIENT_SECRET", creds["client_secret"])
    monkeypatch.setattr(cli_ingest, "MAX_REQUEST_BYTES", 64 * 1024 * 1024)
    async with cli_ingest.remote_sink(server.url) as sink:
        report = await cli_ingest.ingest_file(path, sink, err=io.StringIO(), quiet=True)
    assert dict(report.counts) == {
        "created": 0, "duplicate": 29, "conflict": 0, "invalid": 1, "sampled_out": 0,
    }  # fmt: skip
