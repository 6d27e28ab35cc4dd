"""`failcat ingest FILE`: the same loop whether cases go to the database or to a server.

A sink stores one batch of parsed items and answers one result per item (the bulk answer's
`{index, status, id, errors}`). Lines that are not JSON never reach the sink: they are invalid
items of their own, reported with their line. Statuses are counted as they come (a Counter), so
a status the server adds later is counted and shown without a change here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import orjson

from services.catalog.export import META_KEY
from services.catalog.schemas import INGEST_STATUSES
from services.cli.errors import CliError
from services.cli.remote import problem_text, server_url
from services.cli.sources import CaseFile, Item

Sink = Callable[[list[Any]], Awaitable[list[dict[str, Any]]]]

BATCH = 1000
# Statuses that store nothing new and need nothing from the user.
FINE = frozenset({"created", "duplicate", "sampled_out"})
BASE_COUNTS = INGEST_STATUSES
# Past this many, invalid items are counted but not printed (--error-file keeps them all).
MAX_PRINTED = 20


class Report:
    def __init__(self, source: CaseFile, error_file: TextIO | None, err: TextIO) -> None:
        self.source = source
        self.error_file = error_file
        self.err = err
        self.counts: Counter[str] = Counter(dict.fromkeys(BASE_COUNTS, 0))
        self.printed = 0

    def result(self, item: Item, result: dict[str, Any]) -> None:
        status = result["status"]
        self.counts[status] += 1
        if status in FINE:
            return
        errors = result.get("errors") or []
        if not errors and status != "invalid":
            errors = [{"path": "$", "message": f"{status} (existing case {result.get('id')})"}]
        self.problem(item, status, errors)

    def problem(self, item: Item, status: str, errors: list[dict[str, str]]) -> None:
        line = self.source.line_of(item)
        if self.printed < MAX_PRINTED:
            detail = "; ".join(_error_text(e) for e in errors) or status
            print(f"failcat: {self.source.path}:{line}: {detail}", file=self.err)
        self.printed += 1
        if self.error_file is not None:
            meta = {"line": line, "status": status, "errors": errors}
            if isinstance(item.value, dict):
                # The item as it was, its errors under the key the bulk route ignores: fix the
                # file and ingest it again.
                record = {**item.value, META_KEY: meta}
            else:
                record = {META_KEY: meta, "value": item.value}
            self.error_file.write(orjson.dumps(record).decode() + "\n")

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        hidden = self.printed - MAX_PRINTED
        more = f" ({hidden} more not shown; --error-file keeps them all)" if hidden > 0 else ""
        return f"{self.source.path}: {counts}{more}"

    @property
    def ok(self) -> bool:
        return all(n == 0 for status, n in self.counts.items() if status not in FINE)


def _error_text(error: dict[str, str]) -> str:
    path = error.get("path") or "$"
    return error["message"] if path == "$" else f"{path}: {error['message']}"


async def ingest_file(
    path: Path,
    sink: Sink,
    *,
    error_file: Path | None = None,
    batch: int = BATCH,
    err: TextIO | None = None,
) -> Report:
    err = err or sys.stderr  # read at call time: tests and callers swap sys.stderr
    source = CaseFile(path)
    total = source.count()
    out = None
    if error_file is not None:
        try:
            out = error_file.open("w", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{error_file}: {exc.strerror}") from None
    report = Report(source, out, err)
    try:
        done = 0
        for items in source.batches(batch):
            readable = [it for it in items if it.error is None]
            for it in items:
                if it.error is not None:
                    report.counts["invalid"] += 1
                    report.problem(it, "invalid", [{"path": "$", "message": it.error}])
            results = await sink([it.value for it in readable]) if readable else []
            for it, result in zip(readable, results, strict=True):
                report.result(it, result)
            done += len(items)
            print(f"ingested {done}/{total}", file=err, flush=True)
    finally:
        if out is not None:
            out.close()
    return report


# ---- the command --------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    url = server_url(args.url)
    if args.batch < 1:
        raise CliError(f"--batch {args.batch}: must be at least 1")

    async def run() -> int:
        opened = remote_sink(url) if url else local_sink()
        async with opened as sink:
            report = await ingest_file(
                Path(args.file),
                sink,
                error_file=Path(args.error_file) if args.error_file else None,
                batch=args.batch,
            )
        print(report.summary(), file=sys.stderr)
        print(orjson.dumps(report.counts).decode())
        return 0 if report.ok else 1

    return asyncio.run(run())


@asynccontextmanager
async def local_sink() -> AsyncIterator[Sink]:
    """Local mode: straight into the catalog, one transaction per batch."""
    from services.catalog import service
    from services.governance.redaction import service as redaction
    from shared.db import Database
    from shared.security import SYSTEM
    from shared.settings import load_settings

    settings = load_settings()
    db = Database(settings.catalog_url)
    redaction.install(db, settings)

    async def sink(items: list[Any]) -> list[dict[str, Any]]:
        async with db.transaction() as session:
            results = await service.ingest_cases(session, items, SYSTEM)
        return [r.model_dump(exclude_none=True) for r in results]

    try:
        yield sink
    finally:
        await db.dispose()


# Below the server's 20 MB body limit with room to spare: a batch of large cases is split.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_RETRIES = 5


@asynccontextmanager
async def remote_sink(url: str) -> AsyncIterator[Sink]:
    """Client mode: POST /catalog/v1/cases:bulk, one request per batch (split by size)."""
    from services.cli.remote import connect

    async with connect(url) as remote:

        async def post(parts: list[bytes]) -> list[dict[str, Any]]:
            body = b"[" + b",".join(parts) + b"]"
            for attempt in range(MAX_RETRIES + 1):
                resp = await remote.request(
                    "POST",
                    BULK_PATH,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                retry_after = resp.headers.get("retry-after")
                if resp.status_code in (429, 503) and retry_after and attempt < MAX_RETRIES:
                    # Safe to resend: the bulk route is idempotent (duplicates are answered).
                    await asyncio.sleep(min(float(retry_after), 30.0))
                    continue
                break
            if resp.status_code != 200:
                raise CliError(f"{url}{BULK_PATH}: {problem_text(resp)}")
            return resp.json()["results"]

        async def sink(items: list[Any]) -> list[dict[str, Any]]:
            results: list[dict[str, Any]] = []
            parts: list[bytes] = []
            size = 0
            for item in items:
                encoded = orjson.dumps(item)
                if parts and size + len(encoded) > MAX_REQUEST_BYTES:
                    results += await post(parts)
                    parts, size = [], 0
                parts.append(encoded)
                size += len(encoded) + 1
            if parts:
                results += await post(parts)
            return results

        yield sink


BULK_PATH = "/catalog/v1/cases:bulk"


def add_commands(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "ingest",
        help="ingest cases from a JSON array, NDJSON, CSV or Parquet file",
        description="Exit 0 when every item was stored (or was a duplicate, or sampled out), "
        "1 when any item was refused (each one named by line and field on stderr), "
        "2 when the file or the command was unusable.",
    )
    cmd.add_argument("file")
    cmd.add_argument(
        "--error-file", help="write each refused item here (NDJSON, its errors under _meta)"
    )
    cmd.add_argument("--batch", type=int, default=BATCH, help="items per transaction/request")
    cmd.add_argument("--url", help="a server to send the cases to (default: $FAILCAT_URL)")
    cmd.set_defaults(func=cmd_ingest, local_database=True)
