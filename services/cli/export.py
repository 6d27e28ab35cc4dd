"""`failcat export cases --query Q --format ndjson|csv|parquet [--out FILE] [--url URL]`.

Cases go to standard output (or FILE), progress to standard error. Locally the operator sees
every case; with --url the token's scopes (exports:create) and visibility apply. --out writes
FILE.partial and renames it when the export is complete, so a failed export leaves no file
that looks whole.

Parquet (the `parquet` extra) is written here, from the NDJSON stream (local or the REST
route's), a row group per page of rows: never the whole set in memory. It needs --out: a
Parquet file ends with its footer, so it is no stream for standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from services.catalog.export import (
    FORMATS,
    PAGE_SIZE,
    PARQUET_COLUMNS,
    PARQUET_JSON_COLUMNS,
)
from services.cli.errors import CliError
from services.cli.remote import server_url

EXPORT_PATH = "/catalog/v1/cases:export"
PARQUET = "parquet"
PARQUET_HINT = "Parquet needs pyarrow: pip install 'failcat[parquet]'"


def pyarrow() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or the one line that says how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CliError(PARQUET_HINT) from None
    return pa, pq


def parquet_schema(pa: Any) -> Any:
    numbers = {"confidence", "latency_ms"}

    def kind(name: str) -> Any:
        if name in numbers:
            return pa.float64()
        return pa.list_(pa.string()) if name == "tags" else pa.string()

    return pa.schema([(name, kind(name)) for name in PARQUET_COLUMNS])


def parquet_row(case: dict[str, Any]) -> dict[str, Any]:
    row = {name: case.get(name) for name in PARQUET_COLUMNS}
    for name in PARQUET_JSON_COLUMNS:
        if row[name] is not None:
            row[name] = orjson.dumps(row[name]).decode()
    return row


async def write_parquet(
    chunks: AsyncIterator[bytes], path: Path, rows_per_group: int = PAGE_SIZE
) -> None:
    """NDJSON chunks (split anywhere) -> a Parquet file, a row group per `rows_per_group`."""
    pa, pq = pyarrow()
    schema = parquet_schema(pa)
    rest, rows = b"", []
    with pq.ParquetWriter(str(path), schema) as writer:
        async for chunk in chunks:
            *lines, rest = (rest + chunk).split(b"\n")
            rows.extend(parquet_row(orjson.loads(line)) for line in lines if line.strip())
            if len(rows) >= rows_per_group:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        if rest.strip():
            rows.append(parquet_row(orjson.loads(rest)))
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def progress_printer() -> Callable[[int, Any], None]:
    tty = sys.stderr.isatty()

    def show(done: int, total: Any) -> None:
        end = "" if tty else "\n"
        prefix = "\r" if tty else ""
        print(f"{prefix}exported {done}/{total} cases", end=end, file=sys.stderr, flush=True)

    return show


async def _local(args: argparse.Namespace) -> AsyncIterator[bytes]:
    from services.catalog.export import start_export
    from services.search.service import SearchService
    from shared.db import Database
    from shared.security import SYSTEM
    from shared.settings import load_settings

    settings = load_settings()
    db = Database(settings.catalog_url)
    search = await SearchService.start(settings, db)
    try:
        fmt = wire_format(args.format)
        export = await start_export(search, db, SYSTEM, args.query, fmt, progress_printer())
        async for chunk in export.chunks:
            yield chunk
    finally:
        await search.close()
        await db.dispose()


async def _remote(url: str, args: argparse.Namespace) -> AsyncIterator[bytes]:
    from services.cli.remote import connect

    show = progress_printer()
    params = {"q": args.query, "format": wire_format(args.format)}
    async with connect(url) as remote, remote.stream("GET", EXPORT_PATH, params=params) as resp:
        total = resp.headers.get("x-total-count", "?")
        records = RecordCounter(csv=args.format == "csv")
        async for chunk in resp.aiter_bytes():
            yield chunk
            show(records.feed(chunk), total)


class RecordCounter:
    """Cases in a stream split anywhere: NDJSON lines, or CSV records after the header. A CSV
    cell may hold newlines (incident write-ups do), so only a newline outside quotes ends a
    record ("" inside a quoted cell keeps the count of quotes even)."""

    def __init__(self, csv: bool) -> None:
        self.csv = csv
        self.quoted = False
        self.records = 0

    def feed(self, chunk: bytes) -> int:
        if not self.csv:
            self.records += chunk.count(b"\n")
            return self.records
        *ended, rest = chunk.split(b"\n")
        for part in ended:
            self.quoted ^= part.count(b'"') % 2 == 1
            self.records += not self.quoted
        self.quoted ^= rest.count(b'"') % 2 == 1
        return max(self.records - 1, 0)  # the header is not a case


def wire_format(fmt: str) -> str:
    """What the catalog streams: Parquet is converted from NDJSON here."""
    return "ndjson" if fmt == PARQUET else fmt


def cmd_export_cases(args: argparse.Namespace) -> int:
    if args.format == PARQUET:
        if not args.out:
            raise CliError("--format parquet needs --out FILE (a Parquet file is not a stream)")
        pyarrow()  # before any connection: say how to install it first
    url = server_url(args.url)
    chunks = _remote(url, args) if url else _local(args)
    out_path = Path(args.out) if args.out else None
    partial = out_path.with_name(out_path.name + ".partial") if out_path else None

    async def run(sink: BinaryIO) -> None:
        async for chunk in chunks:
            sink.write(chunk)

    if partial is None:
        asyncio.run(run(sys.stdout.buffer))
        sys.stdout.buffer.flush()
        if sys.stderr.isatty():
            print(file=sys.stderr)
        return 0
    try:
        if args.format == PARQUET:
            asyncio.run(write_parquet(chunks, partial))
        else:
            with partial.open("wb") as fh:
                asyncio.run(run(fh))
        os.replace(partial, out_path)  # type: ignore[arg-type]
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise CliError(f"{exc.filename or out_path}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"failcat: wrote {out_path}", file=sys.stderr)
    return 0


def add_commands(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="export cases (re-importable)")
    kinds = export.add_subparsers(dest="export_command", required=True)
    cases = kinds.add_parser(
        "cases",
        help="cases a query finds, in the wire format (NDJSON, CSV or Parquet)",
        description="Each case in the format `failcat ingest` and the bulk route take, with "
        "read-only facts (id, revision, status, content_hash ...) under _meta, which "
        "ingestion ignores: export from one instance, ingest into another.",
    )
    cases.add_argument("--query", "-q", default="", help="query language (default: every case)")
    cases.add_argument(
        "--format",
        choices=(*FORMATS, PARQUET),
        default="ndjson",
        help="parquet needs --out and the parquet extra (pip install 'failcat[parquet]')",
    )
    cases.add_argument("--out", "-o", help="write to this file (default: standard output)")
    cases.add_argument("--url", help="export from this server (default: $FAILCAT_URL)")
    cases.set_defaults(func=cmd_export_cases, local_database=True, local_index=True)
