"""`failcat ingest FILE`: the same loop whether cases go to the database or to a server.

A sink stores one batch of parsed items and answers one result per item (the bulk answer's
`{index, status, id, errors}`). Lines that are not JSON never reach the sink: they are invalid
items of their own, reported with their line. Statuses are counted as they come (a Counter), so
a status the server adds later is counted and shown without a change here.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import orjson

from services.catalog.export import META_KEY
from services.cli.errors import CliError
from services.cli.sources import CaseFile, Item

Sink = Callable[[list[Any]], Awaitable[list[dict[str, Any]]]]

BATCH = 1000
# Statuses that store nothing new and need nothing from the user.
FINE = frozenset({"created", "duplicate", "sampled_out"})
BASE_COUNTS = ("created", "duplicate", "invalid", "sampled_out")
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
