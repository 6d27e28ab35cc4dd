"""The `failcat` command: serve, worker, db upgrade, ingest, and each service's commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from services.cli.errors import guarded
from shared.runtime import prepare_process
from shared.settings import load_settings

# Services that contribute subcommands through `add_commands(subparsers)`.
COMMAND_MODULES = ("services.auth.cli", "services.search.cli")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.gateway.app import create_app

    settings = load_settings()  # fail fast on a bad setting, before any worker starts
    prepare_process(settings.log_level)
    if args.workers > 1:
        # Stateless API processes sharing the port, each building its app from the
        # environment. Their in-process indexers share the outbox (rows are claimed with
        # SKIP LOCKED on Postgres; indexing is idempotent either way).
        import os

        os.environ["FAILCAT_SERVE_ROLE"] = args.role
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


def cmd_worker(_: argparse.Namespace) -> int:
    from services.search.service import SearchService
    from shared.db import Database

    settings = load_settings()
    prepare_process(settings.log_level)

    async def run() -> None:
        db = Database(settings.catalog_url)
        search = await SearchService.start(settings, db)
        try:
            print("failcat worker: draining the search outbox", file=sys.stderr)
            await search.run_indexer()
        finally:
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


def cmd_ingest(args: argparse.Namespace) -> int:
    from services.cli.ingest import ingest_file

    async def run() -> int:
        async with open_sink(args) as sink:
            report = await ingest_file(
                Path(args.file),
                sink,
                error_file=Path(args.error_file) if args.error_file else None,
            )
        print(report.summary(), file=sys.stderr)
        print(orjson.dumps(report.counts).decode())
        return 0 if report.ok else 1

    return asyncio.run(run())


@asynccontextmanager
async def open_sink(_: argparse.Namespace) -> AsyncIterator[Any]:
    """Local mode: straight into the catalog, one transaction per batch."""
    from services.catalog import service
    from shared.db import Database
    from shared.security import SYSTEM

    settings = load_settings()
    db = Database(settings.catalog_url)

    async def sink(items: list[Any]) -> list[dict[str, Any]]:
        async with db.transaction() as session:
            results = await service.ingest_cases(session, items, SYSTEM)
        return [r.model_dump(exclude_none=True) for r in results]

    try:
        yield sink
    finally:
        await db.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="failcat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (GraphQL, REST, OAuth)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--role", choices=["all", "api", "auth"], default="all")
    serve.add_argument("--workers", type=int, default=1, help="API processes sharing the port")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="run the outbox indexer").set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database operations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)

    ingest = sub.add_parser(
        "ingest",
        help="ingest cases from a JSON array, NDJSON or CSV file",
        description="Exit 0 when every item was stored (or was a duplicate, or sampled out), "
        "1 when any item was refused (each one named by line and field on stderr), "
        "2 when the file or the command was unusable.",
    )
    ingest.add_argument("file")
    ingest.add_argument(
        "--error-file", help="write each refused item here (NDJSON, its errors under _meta)"
    )
    ingest.set_defaults(func=cmd_ingest)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
