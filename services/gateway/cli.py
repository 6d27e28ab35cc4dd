"""The `failcat` command: serve, worker, db upgrade, ingest, and each service's commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys

from services.cli.errors import CliError, Parser, guarded
from services.cli.local import sqlite_path
from shared.runtime import prepare_process
from shared.settings import Settings, load_settings

# Services that contribute subcommands through `add_commands(subparsers)`.
COMMAND_MODULES = (
    "services.cli.ingest",
    "services.auth.cli",
    "services.search.cli",
    "services.cli.export",
    "services.cli.login",
    "services.safeguards.cli",
    "services.annotation.cli",
    "services.governance.retention.cli",
    "services.sharing.cli",
    "services.audit.cli",
)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.gateway.app import create_app

    if not 0 <= args.port < 65536:  # 0: any free port
        raise CliError(f"--port {args.port}: must be between 0 and 65535")
    overrides = {}
    if not os.environ.get("FAILCAT_ISSUER"):
        # Clients find the token endpoint through the issuer's metadata: by default it is
        # the address served here, not another port's (a secret sent to the wrong server).
        overrides["issuer"] = default_issuer(args.host, args.port)
    # Fail fast on a bad setting, before any worker starts.
    settings = load_settings(**overrides)
    if args.workers < 1:
        raise CliError(f"--workers {args.workers}: must be at least 1")
    if args.workers > 1 and (sqlite_path(settings) is not None or settings.embedded_search):
        # SQLite takes one writer at a time, the embedded index lives in one process's
        # indexer, and live subscriptions hear only their own process's changes there.
        raise CliError(
            f"--workers {args.workers} needs Postgres and OpenSearch (FAILCAT_DATABASE_URL, "
            "FAILCAT_SEARCH_URL); the embedded backend serves from one process"
        )
    prepare_process(settings.log_level)
    prepare_database(settings)
    if args.workers > 1:
        # Stateless API processes sharing the port, each building its app from the
        # environment. Their in-process indexers share the outbox (rows are claimed with
        # SKIP LOCKED on Postgres; indexing is idempotent either way), subscriptions hear
        # every process through LISTEN/NOTIFY, and the failure rate limits are per process
        # (services/auth/ratelimit.py says why that is enough).
        # The first signing key and the bootstrap client are made here, once, before the
        # workers race to start: workers that each created a key would each sign with their
        # own, and refuse the others' tokens until their next key refresh. (The auth service
        # also serialises the bootstrap client with an advisory lock, for separate servers.)
        created = asyncio.run(_prepare_shared_auth_state(settings))
        if created is not None:
            from services.gateway.app import bootstrap_banner

            print(bootstrap_banner(settings, created), file=sys.stderr, flush=True)
        os.environ["FAILCAT_SERVE_ROLE"] = args.role
        os.environ["FAILCAT_ISSUER"] = settings.issuer  # the workers read the environment
        uvicorn.run(
            "services.gateway.app:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
            access_log=False,
        )
        return 0
    app = create_app(settings, role=args.role)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def default_issuer(host: str, port: int) -> str:
    """The URL this server answers on, as a client on this machine reaches it."""
    if host in ("", "0.0.0.0", "::"):  # every interface: loopback is one of them
        host = "127.0.0.1"
    elif ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _prepare_shared_auth_state(settings: Settings) -> dict[str, str] | None:
    """The signing key ring and the bootstrap client (returned when it was created now)."""
    from services.auth.service import AuthService
    from shared.db import Database

    db = Database(settings.catalog_url)
    try:
        auth = AuthService(settings, db)
        async with db.transaction() as session:
            await auth.key_store.load(session)  # creates the first key when there is none
        return await auth.ensure_bootstrap_client()
    finally:
        await db.dispose()


def prepare_database(settings: Settings) -> None:
    """The embedded mode creates and migrates its database on first start (`make run` and a
    fresh clone just work); a server database is migrated by `failcat db upgrade` alone."""
    from services.cli.local import require_database

    if sqlite_path(settings) is not None:
        from shared.migrate import upgrade

        upgrade(settings.catalog_url)
    else:
        require_database(settings)


def cmd_worker(_: argparse.Namespace) -> int:
    from services.search.service import SearchService
    from shared.db import Database

    settings = load_settings()
    prepare_process(settings.log_level)

    async def run() -> None:
        from services.audit.service import run_checkpoints
        from services.governance.escalation.runtime import attach
        from services.governance.retention.service import retention_loop

        db = Database(settings.catalog_url)
        search = await SearchService.start(settings, db)
        # Escalation rules are judged as cases are indexed.
        sender = attach(db, search, allow_private=settings.private_webhooks_allowed)
        jobs = []
        if settings.retention_interval_s > 0:
            jobs.append(asyncio.create_task(retention_loop(db, settings.retention_interval_s)))
        try:
            print("failcat worker: draining the search outbox", file=sys.stderr)
            await asyncio.gather(search.run_indexer(), sender.run(), run_checkpoints(db, settings))
        finally:
            for job in jobs:
                job.cancel()
            await sender.close()
            await search.close()
            await db.dispose()

    asyncio.run(run())
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from shared.migrate import upgrade

    settings = load_settings()
    upgrade(settings.catalog_url, args.revision)
    print(f"failcat: database at {args.revision}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="failcat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (GraphQL, REST, OAuth)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--role", choices=["all", "api", "auth"], default="all")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes sharing the port (Postgres only)"
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="run the outbox indexer and the audit checkpoints").set_defaults(
        func=cmd_worker, local_database=True
    )

    db = sub.add_parser("db", help="database operations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """Local commands check the database (and index) first, read-only: a read or a typo never
    creates one. A command given a server (--url or $FAILCAT_URL) touches no local file."""
    from services.cli.local import require_database, require_search_index
    from services.cli.remote import server_url

    remote = hasattr(args, "url") and server_url(args.url) is not None
    if getattr(args, "local_database", False) and not remote:
        settings = load_settings()
        require_database(settings)
        if getattr(args, "local_index", False):
            require_search_index(settings)
    return args.func(args) or 0


if __name__ == "__main__":
    raise SystemExit(main())
