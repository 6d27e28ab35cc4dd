"""The `failcat` command: serve, worker, db upgrade, ingest, and each service's commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

import orjson

from shared.runtime import prepare_process
from shared.settings import load_settings

# Services that contribute subcommands through `add_commands(subparsers)`.
COMMAND_MODULES = ("services.auth.cli", "services.search.cli", "services.annotation.cli")
INGEST_BATCH = 1000


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


def read_cases(path: Path) -> list[Any]:
    data = path.read_bytes()
    if data.lstrip()[:1] == b"[":
        return orjson.loads(data)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def cmd_ingest(args: argparse.Namespace) -> int:
    from services.catalog import service
    from shared.db import Database
    from shared.security import SYSTEM

    settings = load_settings()
    items = read_cases(Path(args.file))

    async def run() -> dict[str, int]:
        db = Database(settings.catalog_url)
        counts = {"created": 0, "duplicate": 0, "invalid": 0, "sampled_out": 0}
        try:
            for start in range(0, len(items), INGEST_BATCH):
                batch = items[start : start + INGEST_BATCH]
                async with db.transaction() as session:
                    results = await service.ingest_cases(session, batch, SYSTEM)
                for r in results:
                    counts[r.status] += 1
                    if r.status == "invalid":
                        print(
                            orjson.dumps({"index": start + r.index, "errors": r.errors}).decode(),
                            file=sys.stderr,
                        )
                print(
                    f"ingested {min(start + INGEST_BATCH, len(items))}/{len(items)}",
                    file=sys.stderr,
                )
        finally:
            await db.dispose()
        return counts

    print(orjson.dumps(asyncio.run(run())).decode())
    return 0


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

    ingest = sub.add_parser("ingest", help="ingest cases from a JSON array or NDJSON file")
    ingest.add_argument("file")
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
    return args.func(args) or 0


if __name__ == "__main__":
    raise SystemExit(main())
