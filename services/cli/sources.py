"""Case files as the CLI reads them: a JSON array, NDJSON, CSV or Parquet, each item with its
line (for Parquet: its row, from 1).

An NDJSON file is read a line at a time (a batch in memory, never the file); a line that is
not JSON becomes an invalid item of its own, so the lines around it are still stored. A JSON
array is parsed whole (it is one value); when an item is invalid its line is found by a second,
slower scan that only runs then. A Parquet file (`failcat export cases --format parquet`) is
read a row group batch at a time; its JSON text columns are parsed back to values.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from services.catalog.export import CSV_COLUMNS, PARQUET_JSON_COLUMNS, row_to_case
from services.cli.errors import CliError

_WS = re.compile(r"[ \t\n\r]*")


@dataclass(slots=True)
class Item:
    index: int  # 0-based position among the file's items
    line: int  # 1-based line of the file where the item starts (0: not looked up yet)
    value: Any = None
    error: str | None = None  # why the line could not be read as JSON


def json_error(exc: json.JSONDecodeError) -> str:
    """orjson's message repeats "line 1 column 5"; say the column once and never a wrong line."""
    return f"invalid JSON at column {exc.colno}: {exc.msg}"


class CaseFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._array: list[Any] | None = None
        self._array_text: bytes | None = None
        self._lines: list[int] | None = None
        self.kind = self._kind()

    def _kind(self) -> str:
        if self.path.is_dir():
            raise CliError(f"{self.path}: is a directory, not a file of cases")
        try:
            with self.path.open("rb") as fh:
                head = fh.read(4096)
        except FileNotFoundError:
            raise CliError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise CliError(f"{self.path}: {exc.strerror}") from None
        if self.path.suffix.lower() == ".csv":
            return "csv"
        if self.path.suffix.lower() == ".parquet":
            return "parquet"
        first = head.lstrip()[:1]
        if first == b"[":
            return "array"
        if first == b"{" and self._single_object():
            return "array"
        return "ndjson"

    def _single_object(self) -> bool:
        """A pretty-printed single case spans lines: read it as an array of one."""
        data = self.path.read_bytes()
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        self._array, self._array_text = [value], data
        return True

    def count(self) -> int:
        """How many items (for progress): one pass over the file, nothing kept."""
        if self.kind == "array":
            return len(self._load_array())
        if self.kind == "parquet":
            return self._parquet().metadata.num_rows
        with self.path.open("rb") as fh:
            n = sum(1 for line in fh if line.strip())
        return n - 1 if self.kind == "csv" and n else n

    def _load_array(self) -> list[Any]:
        if self._array is None:
            data = self.path.read_bytes()
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise CliError(f"{self.path}:{exc.lineno}: {json_error(exc)}") from None
            if not isinstance(value, list):
                raise CliError(
                    f"{self.path}:1: expected a JSON array of cases or NDJSON (one case a line)"
                )
            self._array, self._array_text = value, data
        return self._array

    def batches(self, size: int) -> Iterator[list[Item]]:
        items = {
            "array": self._array_items,
            "ndjson": self._ndjson_items,
            "csv": self._csv_items,
            "parquet": self._parquet_items,
        }
        batch: list[Item] = []
        for item in items[self.kind]():
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _ndjson_items(self) -> Iterator[Item]:
        with self.path.open("rb") as fh:
            index = 0
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield Item(index, n, orjson.loads(line.rstrip()))
                except orjson.JSONDecodeError as exc:
                    yield Item(index, n, error=json_error(exc))
                index += 1

    def _array_items(self) -> Iterator[Item]:
        # Line 0 until asked: finding each item's line costs a second parse.
        for index, value in enumerate(self._load_array()):
            yield Item(index, 0, value)

    def line_of(self, item: Item) -> int:
        if not item.line:
            if self._lines is None:
                self._lines = self.array_lines()
            item.line = self._lines[item.index]
        return item.line

    def array_lines(self) -> list[int]:
        """The line each top-level item of the array starts on (only when reporting)."""
        text = (self._array_text or b"").decode("utf-8", errors="replace")
        decoder = json.JSONDecoder()
        pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] == "{":  # a single object read as an array of one
            return [1 + text.count("\n", 0, pos)]
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        lines, line, last = [], 1, 0
        while pos < len(text) and text[pos] != "]":
            line += text.count("\n", last, pos)
            last = pos
            lines.append(line)
            _, pos = decoder.raw_decode(text, pos)
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text[pos : pos + 1] == ",":
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        return lines

    def _csv_items(self) -> Iterator[Item]:
        with self.path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
            if unknown or not reader.fieldnames:
                raise CliError(
                    f"{self.path}:1: "
                    + (f"unknown column {unknown[0]!r}" if unknown else "no header")
                    + "; the columns are those of `failcat export cases --format csv`"
                )
            start = 2  # after the header (a header with a quoted newline is not supported)
            for index, row in enumerate(reader):
                try:
                    yield Item(index, start, row_to_case(row))
                except ValueError as exc:
                    yield Item(index, start, error=str(exc))
                start = reader.line_num + 1

    def _parquet(self) -> Any:
        from services.cli.export import pyarrow

        _, pq = pyarrow()
        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow's ArrowInvalid & co: not a Parquet file
            raise CliError(f"{self.path}: not a Parquet file ({exc})") from None

    def _parquet_items(self) -> Iterator[Item]:
        index = 0
        for batch in self._parquet().iter_batches(batch_size=500):
            for row in batch.to_pylist():
                try:
                    for name in PARQUET_JSON_COLUMNS & row.keys():
                        if isinstance(row[name], str):
                            row[name] = orjson.loads(row[name])
                    yield Item(index, index + 1, row)
                except orjson.JSONDecodeError as exc:
                    yield Item(index, index + 1, error=f"{name}: {json_error(exc)}")
                index += 1
