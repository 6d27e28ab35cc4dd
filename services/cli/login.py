"""`failcat login [--url URL]` (RFC 8628 device flow) and `failcat logout [--url URL]`.

Login needs a public client allowed the device grant; an operator registers one once:
  failcat clients create --name failcat-cli --public --scopes "cases:read cases:ingest ..." \
    --grant-types "urn:ietf:params:oauth:grant-type:device_code refresh_token"
and users pass its id with --client-id (or $FAILCAT_CLIENT_ID).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from services.auth.protocol import DEVICE_GRANT
from services.cli import credentials
from services.cli.errors import CliError
from services.cli.remote import Remote, connect, problem_text, server_url, token_entry


def _url(args: argparse.Namespace) -> str:
    url = server_url(args.url)
    if url is None:
        raise CliError("which server? pass --url URL or set FAILCAT_URL")
    return url


def login(args: argparse.Namespace) -> int:
    url = _url(args)
    client_id = args.client_id or os.environ.get("FAILCAT_CLIENT_ID")
    if not client_id:
        raise CliError(
            "login needs the id of a public client allowed the device grant: pass --client-id "
            "(an operator creates one with `failcat clients create --public --grant-types "
            f"'{DEVICE_GRANT} refresh_token' ...`)"
        )

    async def run() -> dict[str, Any]:
        async with connect(url) as remote:
            return await device_flow(remote, client_id, args.scope)

    entry = asyncio.run(run())
    credentials.save(url, entry)
    print(
        f"failcat: signed in to {url} (scopes: {entry.get('scope') or '-'}; "
        f"saved in {credentials.credentials_path()})",
        file=sys.stderr,
    )
    return 0


async def device_flow(remote: Remote, client_id: str, scope: str | None) -> dict[str, Any]:
    meta = await remote.discover()
    data = {"client_id": client_id}
    if scope:
        data["scope"] = scope
    resp = await remote.call("POST", meta["device_authorization_endpoint"], data=data)
    if resp.status_code != 200:
        raise CliError(f"{remote.url} refused to start a sign-in: {problem_text(resp)}")
    start = resp.json()
    print(
        f"To sign in, open {start.get('verification_uri_complete') or start['verification_uri']}\n"
        f"  (or open {start['verification_uri']} and enter the code {start['user_code']})",
        file=sys.stderr,
        flush=True,
    )
    interval = float(start.get("interval") or 5)
    deadline = time.monotonic() + float(start.get("expires_in") or 600)
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        resp = await remote.call(
            "POST",
            meta["token_endpoint"],
            data={
                "grant_type": DEVICE_GRANT,
                "device_code": start["device_code"],
                "client_id": client_id,
            },
        )
        if resp.status_code == 200:
            return token_entry(client_id, resp.json())
        error = (
            resp.json().get("error")
            if resp.headers.get("content-type", "").startswith("application/json")
            else None
        )
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 section 3.5
            continue
        if error == "access_denied":
            raise CliError("sign-in was denied")
        raise CliError(f"sign-in failed: {problem_text(resp)}")
    raise CliError("the sign-in code expired before it was approved: run `failcat login` again")


def logout(args: argparse.Namespace) -> int:
    url = _url(args)
    entry = credentials.load(url)
    if entry is None:
        print(f"failcat: not signed in to {url}", file=sys.stderr)
        return 0

    async def revoke() -> str | None:
        # Best effort: the local copy goes whatever the server says (it may be gone for good).
        try:
            async with connect(url) as remote:
                meta = await remote.discover()
                resp = await remote.call(
                    "POST",
                    meta["revocation_endpoint"],
                    data={
                        "token": entry.get("refresh_token") or entry["access_token"],
                        "client_id": entry["client_id"],
                    },
                )
                return None if resp.status_code == 200 else problem_text(resp)
        except CliError as exc:
            return str(exc)

    problem = asyncio.run(revoke())
    credentials.save(url, None)
    note = f" (the server did not confirm revocation: {problem})" if problem else ""
    print(f"failcat: signed out of {url}{note}", file=sys.stderr)
    return 0


def add_commands(subparsers: Any) -> None:
    cmd = subparsers.add_parser("login", help="sign in to a server (device flow); caches a token")
    cmd.add_argument("--url", help="the server (default: $FAILCAT_URL)")
    cmd.add_argument("--client-id", help="public client with the device grant ($FAILCAT_CLIENT_ID)")
    cmd.add_argument("--scope", help="space separated scopes to ask for (default: all allowed)")
    cmd.set_defaults(func=login)
    out = subparsers.add_parser("logout", help="revoke and forget the cached token")
    out.add_argument("--url", help="the server (default: $FAILCAT_URL)")
    out.set_defaults(func=logout)
