"""`failcat ingest [FILE|-]`: the same loop whether cases go to the database or to a server.

A sink stores one batch of parsed items and answers one result per item (the bulk answer's
`{index, status, id, errors}`). Lines that are not JSON never reach the sink: they are invalid
items of their own, reported with their line. Statuses are counted as they come (a Counter), so
a status the server adds later is counted and shown without a change here.

Resuming: each batch is one transaction (or one request), so after a batch is answered every
item before it is settled. The position printed by a run that stops part-way (Ctrl-C, a server
or database failure) is the number of items answered so far; `--resume POSITION` skips that
many and carries on. A batch in flight when the run stopped may have been stored without its
answer arriving: sent again, its items are answered `duplicate` (the content hash), so each
item is stored exactly once. Ctrl-C exits 130 with one line: the items this run sent and how
many were accepted (created, duplicate or sampled out), and the position.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import orjson

from services.catalog.export import META_KEY
from services.catalog.schemas import INGEST_STATUSES
from services.cli.errors import CliError, Interrupted, describe
from services.cli.mapping import ColumnMapping
from services.cli.remote import problem_text, server_url
from services.cli.sources import FORMATS, CaseFile, Item
from shared.errors import FailcatError

Sink = Callable[[list[Any]], Awaitable[list[dict[str, Any]]]]

BATCH = 1000
# Statuses that store nothing new and need nothing from the user.
FINE = frozenset({"created", "duplicate", "sampled_out"})
BASE_COUNTS = INGEST_STATUSES
# Past this many, invalid items are counted but not printed (--error-file keeps them all).
MAX_PRINTED = 20


class Progress:
    """Progress on stderr: a bar redrawn in place (a terminal, or --progress), one line per
    batch (a log: stderr redirected), or nothing (--json)."""

    BAR_WIDTH = 30
    REDRAW_S = 0.1

    def __init__(self, err: TextIO, total: int | None, mode: str, start: int = 0) -> None:
        self.err, self.total, self.mode, self.start = err, total, mode, start
        self.began = time.monotonic()
        self.drawn_at = 0.0
        self.drawn = False

    def rate(self, done: int) -> float:
        elapsed = time.monotonic() - self.began
        return (done - self.start) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, final: bool = False) -> None:
        if self.mode == "lines":
            print(f"ingested {done}/{self.total if self.total is not None else '?'}",
                  file=self.err, flush=True)  # fmt: skip
        elif self.mode == "bar":
            now = time.monotonic()
            if final or now - self.drawn_at >= self.REDRAW_S:
                self.drawn_at = now
                self.err.write("\r\033[K" + self.text(done))
                self.err.flush()
                self.drawn = True

    def text(self, done: int) -> str:
        rate = f"{self.rate(done):,.0f} items/s"
        if self.total:
            filled = round(self.BAR_WIDTH * min(done, self.total) / self.total)
            bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
            return f"[{bar}] {done}/{self.total} {100 * done // self.total}% {rate}"
        return f"{done} items {rate}"

    def clear(self) -> None:
        """Before another line is printed under a drawn bar."""
        if self.drawn:
            self.err.write("\r\033[K")
            self.drawn = False

    def finish(self, done: int) -> None:
        if self.mode == "bar":
            self.update(done, final=True)
            self.err.write("\n")
            self.err.flush()
            self.drawn = False


class Report:
    def __init__(
        self,
        source: CaseFile,
        error_file: TextIO | None,
        err: TextIO,
        progress: Progress | None = None,
        quiet: bool = False,
    ) -> None:
        self.source = source
        self.error_file = error_file
        self.err = err
        self.progress = progress
        self.quiet = quiet
        self.counts: Counter[str] = Counter(dict.fromkeys(BASE_COUNTS, 0))
        self.printed = 0
        self.position = 0  # items answered, from the source's start (what --resume takes)
        self.sent = 0  # items handed to the sink by this run, answered or not
        self.answered = 0

    def result(self, item: Item, result: dict[str, Any]) -> None:
        status = result["status"]
        self.counts[status] += 1
        self.answered += 1
        if status in FINE:
            return
        errors = result.get("errors") or []
        if not errors and status != "invalid":
            errors = [{"path": "$", "message": f"{status} (existing case {result.get('id')})"}]
        self.problem(item, status, errors)

    def problem(self, item: Item, status: str, errors: list[dict[str, str]]) -> None:
        line = self.source.line_of(item)
        if self.printed < MAX_PRINTED and not self.quiet:
            detail = "; ".join(_error_text(e) for e in errors) or status
            if self.progress is not None:
                self.progress.clear()
            print(f"failcat: {self.source.name}:{line}: {detail}", file=self.err)
        self.printed += 1
        if self.error_file is not None:
            meta = {"line": line, "status": status, "errors": errors}
            if isinstance(item.value, dict):
                # The item as it was, its errors under the key the bulk route ignores: fix the
                # file and ingest it again.
                record = {**item.value, META_KEY: meta}
            elif item.error is not None:
                # Nothing could be read: keep what the file held, to be fixed by hand.
                key = "raw_line" if isinstance(item.raw, str) else "raw_row"
                record = {META_KEY: meta, key: item.raw}
            else:
                record = {META_KEY: meta, "value": item.value}
            # A CSV row with more cells than the header has them under the key None ("null");
            # a Parquet row's values may be dates or bytes (as text).
            line = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)
            self.error_file.write(line.decode() + "\n")

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        hidden = self.printed - MAX_PRINTED
        more = f" ({hidden} more not shown; --error-file keeps them all)" if hidden > 0 else ""
        return f"{self.source.name}: {counts}{more}"

    def done_text(self) -> str:
        """What this run did, for a run stopped part-way: "600 items sent, 598 accepted (...)"."""
        unanswered = self.sent - self.answered
        accepted = sum(n for status, n in self.counts.items() if status in FINE)
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        # A batch in flight may have been stored: sent again, its items are answered duplicate.
        pending = f" ({unanswered} unanswered)" if unanswered else ""
        return f"{self.sent} items sent{pending}, {accepted} accepted ({counts})"

    @property
    def ok(self) -> bool:
        return all(n == 0 for status, n in self.counts.items() if status not in FINE)


def _error_text(error: dict[str, str]) -> str:
    path = error.get("path") or "$"
    return error["message"] if path == "$" else f"{path}: {error['message']}"


def progress_mode(err: TextIO, requested: bool, quiet: bool) -> str:
    if quiet:
        return "off"
    if requested or err.isatty():
        return "bar"
    return "lines"


async def ingest_file(
    path: Path | CaseFile,
    sink: Sink,
    *,
    error_file: Path | None = None,
    batch: int = BATCH,
    err: TextIO | None = None,
    resume: int = 0,
    progress: str | None = None,
    quiet: bool = False,
) -> Report:
    """Ingest a file (or a CaseFile: standard input, a mapped CSV) from item `resume` on.

    A run that stops part-way raises CliError (or re-raises an interruption) after printing
    the position to resume from."""
    err = err or sys.stderr  # read at call time: tests and callers swap sys.stderr
    source = path if isinstance(path, CaseFile) else CaseFile(path)
    total = source.count()
    out = None
    if error_file is not None:
        try:
            # A resumed run adds to the errors of the run it continues.
            out = error_file.open("a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{error_file}: {exc.strerror}") from None
    bar = Progress(err, total, progress or progress_mode(err, False, quiet), start=resume)
    report = Report(source, out, err, bar, quiet)
    report.position = resume
    try:
        for items in source.batches(batch, skip=resume):
            readable = [it for it in items if it.error is None]
            for it in items:
                if it.error is not None:
                    report.counts["invalid"] += 1
                    report.problem(it, "invalid", [{"path": "$", "message": it.error}])
            report.sent += len(readable)
            results = await sink([it.value for it in readable]) if readable else []
            for it, result in zip(readable, results, strict=True):
                report.result(it, result)
            report.position = items[-1].index + 1
            if out is not None:
                out.flush()  # what a resumed run must not lose
            bar.update(report.position)
        if resume > source.items_read:
            # Nothing was skipped to: a wrong position, not a finished run.
            raise CliError(
                f"--resume {resume}: past the end of {source.name}, which has "
                f"{source.items_read} items (nothing ingested)"
            )
        bar.finish(report.position)
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C: asyncio cancels the run at its next await (or, a second time, raises
        # where it is). Answered as one line: what was done and the position, exit 130.
        bar.clear()
        raise Interrupted(f"interrupted: {report.done_text()}; {_resume_hint(report)}") from None
    except Exception as exc:  # a server or database failure part-way: say where it stopped
        if report.position <= resume:
            raise  # nothing done: the error alone says it
        if isinstance(exc, FailcatError):
            reason = describe(exc)
        elif isinstance(exc, OSError):
            where = f"{exc.filename}: " if exc.filename else ""
            reason = f"{where}{exc.strerror or exc}"
        elif isinstance(exc, CliError):
            reason = str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise CliError(f"{reason} ({_resume_hint(report)})") from None
    finally:
        if out is not None:
            out.close()
    return report


def _resume_hint(report: Report) -> str:
    return f"stopped after {report.position} items: resume with --resume {report.position}"


# ---- the command --------------------------------------------------------------------------


def open_source(args: argparse.Namespace) -> CaseFile:
    mapping = ColumnMapping.load(Path(args.mapping)) if args.mapping else None
    if args.file in (None, "-"):
        stdin = sys.stdin
        if args.file is None and stdin.isatty():
            raise CliError("no FILE given and standard input is a terminal: give FILE, or - "
                           "with cases piped in")  # fmt: skip
        fmt = args.format or ("csv" if mapping is not None else None)
        return CaseFile(None, stream=stdin.buffer, fmt=fmt, mapping=mapping)
    return CaseFile(Path(args.file), fmt=args.format, mapping=mapping)


def cmd_ingest(args: argparse.Namespace) -> int:
    url = server_url(args.url)
    if args.batch < 1:
        raise CliError(f"--batch {args.batch}: must be at least 1")
    if args.resume < 0:
        raise CliError(f"--resume {args.resume}: must be 0 or more")
    source = open_source(args)
    mode = progress_mode(sys.stderr, args.progress, args.json)

    async def run() -> int:
        opened = remote_sink(url) if url else local_sink()
        async with opened as sink:
            report = await ingest_file(
                source,
                sink,
                error_file=Path(args.error_file) if args.error_file else None,
                batch=args.batch,
                resume=args.resume,
                progress=mode,
                quiet=args.json,
            )
        if not args.json:
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
            if resp.status_code == 413:
                # Over a limit of the server's (body size, items per request): halves are
                # sent instead, and an item too large on its own is refused like any invalid
                # item, named by its line, so the rest of the file is still stored.
                if len(parts) > 1:
                    half = len(parts) // 2
                    first, second = await post(parts[:half]), await post(parts[half:])
                    return first + [{**r, "index": r["index"] + half} for r in second]
                too_large = f"too large to send ({len(parts[0]):,} bytes as JSON): "
                error = {"path": "$", "message": too_large + problem_text(resp)}
                return [{"index": 0, "status": "invalid", "errors": [error]}]
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
        help="ingest cases from a JSON array, NDJSON, CSV or Parquet file, or standard input",
        description="Exit 0 when every item was stored (or was a duplicate, or sampled out), "
        "1 when any item was refused (each one named by line and field on stderr), "
        "2 when the file or the command was unusable, or the run stopped part-way (it then "
        "prints the --resume position to carry on from), 130 when stopped by Ctrl-C (one line: "
        "the items sent and accepted, and the --resume position).",
    )
    cmd.add_argument(
        "file", nargs="?", help="the file; - (or nothing, with cases piped in) for stdin"
    )
    cmd.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="the input's format (default: told from the name and the first bytes)",
    )
    cmd.add_argument(
        "--mapping",
        metavar="FILE",
        help="YAML or JSON: CSV column -> case field path, with types (services/cli/mapping.py)",
    )
    cmd.add_argument(
        "--error-file", help="write each refused item here (NDJSON, its errors under _meta)"
    )
    cmd.add_argument(
        "--resume",
        type=int,
        default=0,
        metavar="POSITION",
        help="skip the first POSITION items (printed by a run that stopped part-way; "
        "past the last item: exit 2)",
    )
    cmd.add_argument(
        "--progress", action="store_true", help="draw the progress bar even when not a terminal"
    )
    cmd.add_argument(
        "--json", action="store_true", help="only the counts as JSON on stdout: no progress"
    )
    cmd.add_argument("--batch", type=int, default=BATCH, help="items per transaction/request")
    cmd.add_argument("--url", help="a server to send the cases to (default: $FAILCAT_URL)")
    cmd.set_defaults(func=cmd_ingest, local_database=True)
