"""CLI of the annotation service: `failcat import aiid DIR`, `failcat agreement`."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from services.cli.errors import CliError
from shared.settings import load_settings

# The bootstrap draws of each annotator pair are held in memory at once (resamples x k x k
# counts): a bound keeps a typo from exhausting memory, far above what a stable 95% interval
# needs (the default is 1,000).
MAX_RESAMPLES = 100_000


def cmd_import_aiid(args: argparse.Namespace) -> int:
    from services.annotation.aiid_import import import_aiid
    from shared.db import Database
    from shared.security import SYSTEM

    settings = load_settings()

    async def run() -> dict[str, Any]:
        db = Database(settings.catalog_url)
        try:
            # One transaction: an interrupted import leaves nothing half-imported.
            async with db.transaction() as session:
                return await import_aiid(session, Path(args.dir), SYSTEM)
        finally:
            await db.dispose()

    print(orjson.dumps(asyncio.run(run())).decode())
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from services.annotation import service
    from shared.db import Database
    from shared.security import SYSTEM

    # 0 is allowed: no intervals, only the point estimates.
    if not 0 <= args.resamples <= MAX_RESAMPLES:
        raise CliError(f"--resamples {args.resamples}: must be between 0 and {MAX_RESAMPLES:,}")
    settings = load_settings()

    async def run() -> dict[str, Any]:
        db = Database(settings.catalog_url)
        search = None
        try:
            case_ids = None
            if args.query is not None:
                from services.search.service import SearchService

                search = await SearchService.start(settings, db)
                case_ids = await service.case_ids_matching(search, SYSTEM, args.query)
            async with db.transaction() as session:
                report = await service.agreement(
                    session,
                    args.taxonomy,
                    args.field,
                    SYSTEM,
                    annotators=[a.strip() for a in (args.annotators or "").split(",") if a.strip()]
                    or None,
                    case_ids=case_ids,
                    resamples=args.resamples,
                )
        finally:
            if search is not None:
                await search.close()
            await db.dispose()
        return {"taxonomy": args.taxonomy, "field": args.field, **asdict(report)}

    print(orjson.dumps(asyncio.run(run()), option=orjson.OPT_INDENT_2).decode())
    return 0


def add_commands(sub: Any) -> None:
    imp = sub.add_parser("import", help="import records from other catalogs")
    imp_sub = imp.add_subparsers(dest="import_command", required=True)
    aiid = imp_sub.add_parser(
        "aiid", help="AIID incidents, CSETv1/GMF taxonomies and CSETv1 annotations"
    )
    aiid.add_argument("dir", help="the folder holding the AIID files by their published names")
    aiid.set_defaults(func=cmd_import_aiid)

    agr = sub.add_parser("agreement", help="inter-annotator agreement on one taxonomy field")
    agr.add_argument("--taxonomy", required=True)
    agr.add_argument("--field", required=True)
    agr.add_argument("--query", default=None, help="only the cases this search matches")
    agr.add_argument("--annotators", default=None, help="comma-separated; default: all")
    agr.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help=f"bootstrap resamples for the 95%% intervals, 0 (none) to {MAX_RESAMPLES:,}",
    )
    agr.set_defaults(func=cmd_agreement)
