"""`failcat audit verify|checkpoint|export`, run by an operator on the host.

verify exits 0 when the chain and the signed checkpoints agree, 1 naming the first bad seq
when they do not (an entry edited, deleted, reordered, or the tail cut off), 2 on a usage or
configuration error. checkpoint signs the head now. export writes JSONL (one entry a line,
hash included) for a SIEM, streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.cli.errors import CliError

EXIT_OK, EXIT_TAMPERED = 0, 1


def add_commands(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="the audit trail: verify, checkpoint, export")
    audit.set_defaults(local_database=True)
    sub = audit.add_subparsers(dest="audit_command", required=True)

    verify = sub.add_parser(
        "verify",
        help="check the hash chain and the signed checkpoints: exit 0 intact, 1 tampered",
        description="Recompute the audit chain and compare it with the signed checkpoints. "
        "Exit 0: intact; 1: tampered (the first bad seq is named); 2: usage or configuration "
        "error.",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=_verify, local_database=True)

    checkpoint = sub.add_parser("checkpoint", help="sign the chain's head now")
    checkpoint.set_defaults(func=_checkpoint, local_database=True)

    export = sub.add_parser("export", help="write entries as JSONL (one a line, with hash)")
    export.add_argument("--from", dest="since", help="ISO time (inclusive) or a seq")
    export.add_argument("--to", dest="until", help="ISO time (exclusive) or a seq (inclusive)")
    export.add_argument("--out", "-o", help="default: standard output")
    export.set_defaults(func=_export, local_database=True)


def _bound(value: str | None, name: str) -> datetime | int | None:
    if value is None:
        return None
    from services.audit.service import MAX_SEQ

    if value.isdigit():
        if int(value) > MAX_SEQ:  # the drivers cannot even compare with it
            raise CliError(f"{name} {value}: past the largest seq there can be ({MAX_SEQ})")
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{name} {value!r}: not an ISO 8601 time or a seq") from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise CliError(f"{name} {value!r}: outside the years 1-9999 once in UTC") from None


def _reversed(since: datetime | int | None, until: datetime | int | None) -> bool:
    """True when the range holds nothing by its bounds alone: --to is inclusive for a seq,
    exclusive for a time. A seq against a time is left to the data."""
    if isinstance(since, int) and isinstance(until, int):
        return since > until
    if isinstance(since, datetime) and isinstance(until, datetime):
        return since >= until
    return False


def _with_db(work: Callable[[Any, Any], Awaitable[int]]) -> int:
    from shared.db import Database
    from shared.settings import load_settings

    settings = load_settings()

    async def main() -> int:
        db = Database(settings.catalog_url)
        try:
            return await work(db, settings)
        finally:
            await db.dispose()

    return asyncio.run(main())


def _verify(args: argparse.Namespace) -> int:
    from services.audit import service

    async def work(db: Any, settings: Any) -> int:
        report = await service.verify(db, settings)
        if args.json:
            print(json.dumps(report.as_json(), indent=2))
        if report.ok:
            print(
                f"failcat audit verify: ok: {report.entries} entries, head seq "
                f"{report.head_seq}, {report.checkpoints} checkpoints agree "
                f"({report.seconds:.2f} s)",
                file=sys.stderr,
            )
            if report.entries and not report.checkpoints:
                # The chain alone cannot show a cut-off tail: only a signed head can.
                print(
                    "failcat audit verify: warning: no signed checkpoint yet, so a truncated "
                    "tail would go unnoticed; run `failcat audit checkpoint`",
                    file=sys.stderr,
                )
            return EXIT_OK
        # Only a checkpoint file names no seq: its own signature does not verify.
        where = (
            f"first bad seq {report.first_bad_seq}"
            if report.first_bad_seq
            else "a checkpoint file does not verify"
        )
        print(f"failcat audit verify: TAMPERED: {where}", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_TAMPERED

    return _with_db(work)


def _checkpoint(_: argparse.Namespace) -> int:
    from services.audit import service

    async def work(db: Any, settings: Any) -> int:
        mark = await service.checkpoint_now(db, settings)
        print(
            json.dumps(
                {
                    "seq": mark.seq,
                    "hash": mark.hash,
                    "at": mark.at,
                    "kid": mark.kid,
                    "path": str(mark.path),
                }
            )
        )
        return EXIT_OK

    return _with_db(work)


def _export(args: argparse.Namespace) -> int:
    from services.audit import service

    since, until = _bound(args.since, "--from"), _bound(args.until, "--to")
    if _reversed(since, until):  # an empty export would read as "nothing happened"
        raise CliError(
            f"--from {args.since} does not come before --to {args.until}: the range holds nothing"
        )

    if args.out is not None:
        # Named as given, before any entry is read: the write goes to a .partial file beside
        # it, whose name the OS error would give, and a directory failed only at the end.
        if Path(args.out).is_dir():
            raise CliError(f"--out {args.out}: is a directory")
        if not Path(args.out).parent.is_dir():
            raise CliError(f"--out {args.out}: no such directory {Path(args.out).parent}")

    async def work(db: Any, _: Any) -> int:
        if args.out is None:
            out = sys.stdout.buffer
            async for chunk in service.export(db, since, until):
                out.write(chunk)
            out.flush()
            return EXIT_OK
        path = Path(args.out)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as fh:
                async for chunk in service.export(db, since, until):
                    fh.write(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return EXIT_OK

    return _with_db(work)
