"""CLI of retention: `failcat retention run [--dry-run] [--json]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from services.cli.errors import CliError
from shared.settings import load_settings


def cmd_run(args: argparse.Namespace) -> int:
    from services.governance.retention import service
    from shared.db import Database

    if args.chunk < 1:
        raise CliError(f"--chunk {args.chunk}: must be at least 1")
    if args.chunk > service.MAX_CHUNK:
        raise CliError(f"--chunk {args.chunk}: must be at most {service.MAX_CHUNK}")
    settings = load_settings()
    last = [0.0]

    def progress(line: str) -> None:
        # A line a second at most: a big run shows it is moving, a small one stays quiet.
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            print(f"failcat: {line}", file=sys.stderr, flush=True)

    async def run() -> Any:
        db = Database(settings.catalog_url)
        try:
            return await service.run(db, dry_run=args.dry_run, chunk=args.chunk, progress=progress)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    if args.json:
        print(orjson.dumps(report.as_json(with_ids=True), option=orjson.OPT_INDENT_2).decode())
    else:
        verb = "would purge" if report.dry_run else "purged"
        for p in report.policies:
            print(
                f"{p.data_source}\t{p.sensitivity}\t{verb} {len(p.payload_purged)} payloads, "
                f"{len(p.cases_purged)} cases\t{len(p.held)} held"
            )
        if not report.policies:
            print("no retention policies (setRetentionPolicy)")
    print(
        f"failcat: retention {'dry run' if report.dry_run else 'run'}: "
        f"{report.payload_purged} payloads, {report.cases_purged} cases, {report.held} held",
        file=sys.stderr,
    )
    return 0


def add_commands(sub: Any) -> None:
    ret = sub.add_parser("retention", help="retention policies and legal holds")
    ret_sub = ret.add_subparsers(dest="retention_command", required=True)
    run = ret_sub.add_parser(
        "run", help="purge what the retention policies make due (held cases are skipped)"
    )
    run.add_argument("--dry-run", action="store_true", help="report what is due; change nothing")
    run.add_argument("--json", action="store_true", help="the report as JSON, with case ids")
    run.add_argument("--chunk", type=int, default=500, help="cases per transaction")
    run.set_defaults(func=cmd_run, local_database=True)
