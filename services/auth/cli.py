"""`failcat clients|users|keys ...`: operator commands, run on the host with the database URL.

Each command opens one transaction, prints JSON on stdout (errors: one line on stderr, exit 2),
and disposes of the engine. A client secret is printed once, by `create` and `rotate-secret`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.auth import protocol
from services.cli.errors import CliError

Action = Callable[[Any, AsyncSession, argparse.Namespace], Awaitable[Any]]


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from services.auth.service import AuthService
        from shared.db import Database
        from shared.settings import load_settings

        settings = load_settings()

        async def main() -> Any:
            db = Database(settings.catalog_url)
            # No background poll: the command only needs the service's operations.
            service = AuthService(settings, db)
            try:
                async with db.transaction() as session:
                    return await action(service, session, args)
            finally:
                await db.dispose()

        # A FailcatError reaches the `failcat` entry point, which prints it as one line (exit 2).
        result = asyncio.run(main())
        print(json.dumps(result, indent=2, default=str))
        return 0

    return handler


def _operator() -> Any:
    """The audit trail's actor for a command run on the host: the OS account running it."""
    from shared.audit import Actor

    return Actor(subject=f"os:{getpass.getuser()}", client="cli")


def _dump(model: Any) -> Any:
    if isinstance(model, list):
        return [m.model_dump(mode="json") for m in model]
    return model.model_dump(mode="json")


# ---- clients -------------------------------------------------------------------------------


async def _clients_create(service: Any, session: AsyncSession, args: argparse.Namespace) -> Any:
    record, secret = await service.create_client(
        session,
        name=args.name,
        scopes=args.scopes,
        team=args.team,
        clearance=args.clearance,
        grant_types=args.grant_types.split(),
        redirect_uris=args.redirect_uri or [],
        public=args.public,
        actor=_operator(),
    )
    out = {"client_id": record.client_id, "client_secret": secret}
    if args.public:
        out.pop("client_secret")
    return out


async def _clients_list(service: Any, session: AsyncSession, _: argparse.Namespace) -> Any:
    return _dump(await service.list_clients(session))


async def _clients_show(service: Any, session: AsyncSession, args: argparse.Namespace) -> Any:
    return _dump(await service.get_client(session, args.client_id))


async def _clients_rotate(service: Any, session: AsyncSession, args: argparse.Namespace) -> Any:
    record, secret = await service.rotate_client_secret(session, args.client_id, _operator())
    return {"client_id": record.client_id, "client_secret": secret}


async def _clients_disable(service: Any, session: AsyncSession, args: argparse.Namespace) -> Any:
    return _dump(await service.disable_client(session, args.client_id, _operator()))


# ---- users and keys ------------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("--password-stdin: standard input is empty: pipe the password in")
        return line.rstrip("\n")
    first = _prompt("Password: ")
    if first != _prompt("Repeat: "):
        raise CliError("passwords differ")
    return first


def _prompt(text: str) -> str:
    """A password typed at the terminal. Without one (a script, a service, CI) getpass would
    warn and read the echoed password from standard input instead: that is refused, and the
    error says how to give the password without a terminal."""
    hint = "pipe it in with --password-stdin"
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(text)
        except getpass.GetPassWarning:
            raise CliError(
                f"a password is needed and there is no terminal to ask: {hint}"
            ) from None
        except EOFError:  # Ctrl-D at the prompt
            raise CliError(f"a password is needed: type it at the prompt, or {hint}") from None


async def _users_create(service: Any, session: AsyncSession, args: argparse.Namespace) -> Any:
    return _dump(
        await service.create_user(
            session,
            username=args.username,
            password=args.password,
            roles=args.roles.split(),
            team=args.team,
            clearance=args.clearance,
            actor=_operator(),
        )
    )


async def _users_list(service: Any, session: AsyncSession, _: argparse.Namespace) -> Any:
    return _dump(await service.list_users(session))


async def _users_disable(service: Any, session: AsyncSession, args: argparse.Namespace) -> Any:
    return _dump(await service.disable_user(session, args.username, _operator()))


async def _keys_rotate(service: Any, session: AsyncSession, _: argparse.Namespace) -> Any:
    kid = await service.rotate_keys(session, _operator())
    return {
        "kid": kid,
        "note": "running servers sign with the new key within their poll interval; "
        "tokens signed with the old key stay valid until they expire",
    }


def _group(subparsers: Any, name: str, text: str) -> Any:
    parser = subparsers.add_parser(name, help=text)
    # Operator commands: the entry point checks the database exists and is migrated first.
    parser.set_defaults(local_database=True)
    return parser.add_subparsers(dest=f"{name}_command", required=True)


def add_commands(subparsers: Any) -> None:
    from services.auth.service import DEFAULT_GRANT_TYPES

    clients = _group(subparsers, "clients", "OAuth clients")
    create = clients.add_parser("create", help="register a client; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help='space separated, e.g. "cases:read"')
    create.add_argument("--team")
    create.add_argument(
        "--clearance", default="internal", help="public|internal|confidential|restricted"
    )
    create.add_argument(
        "--grant-types",
        default=" ".join(DEFAULT_GRANT_TYPES),
        help=f"space separated: {' '.join(protocol.GRANT_TYPES)}",
    )
    create.add_argument("--redirect-uri", action="append", help="exact; repeat for several")
    create.add_argument("--public", action="store_true", help="no secret (CLI/native; PKCE)")
    create.set_defaults(func=_run(_clients_create))
    clients.add_parser("list", help="list clients").set_defaults(func=_run(_clients_list))
    for name, action, text in (
        ("show", _clients_show, "show one client"),
        ("rotate-secret", _clients_rotate, "replace the secret; prints the new one once"),
        ("disable", _clients_disable, "refuse new tokens and revoke live ones"),
    ):
        cmd = clients.add_parser(name, help=text)
        cmd.add_argument("client_id")
        cmd.set_defaults(func=_run(action))

    users = _group(subparsers, "users", "local user accounts")
    ucreate = users.add_parser(
        "create", help="create a user (password prompted, or --password-stdin)"
    )
    ucreate.add_argument("--username", required=True)
    ucreate.add_argument("--roles", required=True, help='space separated, e.g. "curator"')
    ucreate.add_argument("--team")
    ucreate.add_argument("--clearance", default="internal")
    ucreate.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (no prompt)",
    )

    def users_create(args: argparse.Namespace) -> int:
        args.password = _read_password(args)
        return _run(_users_create)(args)

    ucreate.set_defaults(func=users_create)
    users.add_parser("list", help="list users").set_defaults(func=_run(_users_list))
    udisable = users.add_parser(
        "disable", help="refuse the user's sign-ins and revoke their live tokens"
    )
    udisable.add_argument("username", help="username (or user id)")
    udisable.set_defaults(func=_run(_users_disable))

    keys = _group(subparsers, "keys", "token signing keys")
    keys.add_parser("rotate", help="new signing key; old tokens keep working").set_defaults(
        func=_run(_keys_rotate)
    )
