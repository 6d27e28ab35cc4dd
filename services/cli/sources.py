"""Case files as the CLI reads them: a JSON array, NDJSON, CSV or Parquet, from a file or from
standard input, each item with its line (for Parquet: its row, from 1).

An NDJSON file is read a line at a time (a batch in memory, never the file); a line that is
not JSON becomes an invalid item of its own, so the lines around it are still stored. A JSON
array is parsed whole (it is one value); when an item is invalid its line is found by a second,
slower scan that only runs then. A Parquet file (`failcat export cases --format parquet`) is
read a row group batch at a time; its JSON text columns are parsed back to values. A CSV file
has the columns of `failcat export cases --format csv`, or any columns with a mapping file
(services/cli/mapping.py).

A UTF-8 byte order mark at the start (what Excel's "CSV UTF-8" and Windows tools write) is
skipped. Bytes that are not UTF-8 make the item holding them invalid (an NDJSON line, a CSV
record: named by line, byte and column) and the rest is read; a JSON array holding them cannot
be read at all (exit 2, naming the line and column).

Standard input is read once, as it comes: its format is given (`--format`) or told from its
first bytes (`[` or a multi-line object: JSON; `{`: NDJSON; else CSV), and its total is not
known in advance. `batches(size, skip)` skips the first `skip` items without converting them
(`failcat ingest --resume`): an NDJSON line skipped is not even parsed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from services.catalog.export import CSV_COLUMNS, PARQUET_JSON_COLUMNS, row_to_case
from services.cli.errors import CliError
from services.cli.mapping import ColumnMapping

_WS = re.compile(r"[ \t\n\r]*")
BOM = b"\xef\xbb\xbf"
# csv's default cell limit (128 KB) is below what a case may hold (a summary of 100,000
# characters, 256 KB values): larger cells are read and the server judges the item. This is
# above what one request may carry, so a bigger cell is an unclosed quote or not a case file.
CSV_CELL_LIMIT = 32 * 1024 * 1024
# --format names -> the kinds read here.
FORMATS = {"json": "array", "ndjson": "ndjson", "csv": "csv", "parquet": "parquet"}
STDIN = "<stdin>"


@dataclass(slots=True)
class Item:
    index: int  # 0-based position among the file's items
    line: int  # 1-based line of the file where the item starts (0: not looked up yet)
    value: Any = None
    error: str | None = None  # why the item could not be read
    # What the file held for an item that could not be read (the line's text, the row's
    # cells): the error file keeps it, since there is no value to keep.
    raw: Any = None


def json_error(exc: json.JSONDecodeError) -> str:
    """orjson's message repeats "line 1 column 5"; say the column once and never a wrong line."""
    return f"invalid JSON at column {exc.colno}: {exc.msg}"


def not_utf8(data: bytes) -> tuple[int, str] | None:
    """Where `data` stops being UTF-8, as (line, "not UTF-8 text: byte 0x93 at column 12"),
    or None. orjson says "str is not valid UTF-8: surrogates not allowed" at column 1."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8", errors="replace")) + 1
        return line, (
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} "
            "(save the file as UTF-8)"
        )
    return None


def _undecodable_cell(row: dict[Any, Any]) -> str | None:
    """The first cell of a CSV record read with errors="surrogateescape" that held bytes that
    are not UTF-8, as an error naming its column."""
    for column, text in row.items():
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            byte = ord(text[exc.start]) - 0xDC00
            return f"{column}: not UTF-8 text: byte 0x{byte:02x} (save the file as UTF-8)"
    return None


def _readable_cells(row: dict[Any, Any]) -> dict[Any, Any]:
    """The cells with bytes that are not UTF-8 shown as U+FFFD (for the error file)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return {k: fix(v) for k, v in row.items()}


class _Prefixed(io.RawIOBase):
    """A one-pass stream: the bytes already read to tell the format, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read1(len(buffer)) if hasattr(self.rest, "read1") else b""
        if not data and not hasattr(self.rest, "read1"):
            data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class CaseFile:
    """A file (`path`) or standard input (`stream`) of cases. `fmt` (a --format name) is the
    format when given, else told from the name and the first bytes. `mapping`: how the
    columns of a CSV become case fields."""

    def __init__(
        self,
        path: Path | None,
        *,
        stream: BinaryIO | None = None,
        fmt: str | None = None,
        mapping: ColumnMapping | None = None,
    ) -> None:
        self.path = path
        self.stream = stream
        self.name = STDIN if path is None else str(path)
        self.mapping = mapping
        self._array: list[Any] | None = None
        self._array_text: bytes | None = None
        self._lines: list[int] | None = None
        # Items in the source, skipped ones included: known once batches() has read it all
        # (standard input has no count in advance; a --resume past the end is told by it).
        self.items_read = 0
        self._head = b""
        if stream is not None:
            self._head = (stream.read(4096) or b"").removeprefix(BOM)
            self.stream = io.BufferedReader(_Prefixed(self._head, stream))  # type: ignore[arg-type]
        self.kind = FORMATS[fmt] if fmt else self._kind()
        if stream is None:
            self._check_readable()
        if mapping is not None and self.kind != "csv":
            raise CliError(f"{self.name}: --mapping applies to CSV input, not {self.kind}")

    def _check_readable(self) -> None:
        assert self.path is not None
        if self.path.is_dir():
            raise CliError(f"{self.path}: is a directory, not a file of cases")
        try:
            with self.path.open("rb"):
                pass
        except FileNotFoundError:
            raise CliError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise CliError(f"{self.path}: {exc.strerror}") from None

    def _kind(self) -> str:
        if self.stream is not None:
            return self._stdin_kind()
        self._check_readable()
        assert self.path is not None
        with self.path.open("rb") as fh:
            head = fh.read(4096).removeprefix(BOM)
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

    def _stdin_kind(self) -> str:
        """Told from the first bytes (read in __init__, read again as the stream's start)."""
        head = self._head
        if head.startswith(b"PAR1"):
            kind = "parquet"
        else:
            first = head.lstrip()[:1]
            if first == b"[":
                kind = "array"
            elif first == b"{":
                line = head.lstrip().split(b"\n", 1)[0]
                try:
                    orjson.loads(line)
                    kind = "ndjson"
                except orjson.JSONDecodeError:
                    kind = "array" if b"\n" in head.lstrip() else "ndjson"
            elif not head.strip():
                kind = "ndjson"  # nothing at all: no items
            else:
                kind = "csv"
        return kind

    def _open(self) -> BinaryIO:
        """The bytes, from the start (a file) or from where they are (stdin: read once)."""
        if self.stream is not None:
            return self.stream
        assert self.path is not None
        fh = self.path.open("rb")
        if fh.read(len(BOM)) != BOM:
            fh.seek(0)
        return fh

    def _read_all(self) -> bytes:
        if self.stream is not None:
            return self.stream.read()
        assert self.path is not None
        return self.path.read_bytes().removeprefix(BOM)

    def _single_object(self) -> bool:
        """A pretty-printed single case spans lines: read it as an array of one."""
        data = self._read_all()
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        self._array, self._array_text = [value], data
        return True

    def count(self) -> int | None:
        """How many items (for progress): one pass over the file, nothing kept; None for
        standard input (read once, as it comes) unless it is one JSON value."""
        if self.kind == "array":
            return len(self._load_array())
        if self.kind == "parquet":
            return self._parquet().metadata.num_rows
        if self.stream is not None:
            return None
        if self.kind == "csv":
            # Records, not lines: a quoted cell may hold newlines (incident write-ups do).
            # Empty rows are skipped as csv.DictReader skips them; the header is not an item.
            # Only for progress: what cannot be read is reported when the rows are read.
            csv.field_size_limit(max(csv.field_size_limit(), CSV_CELL_LIMIT))
            with io.TextIOWrapper(
                self._open(), encoding="utf-8", errors="replace", newline=""
            ) as text:
                try:
                    n = sum(1 for row in csv.reader(text) if row)
                except csv.Error:
                    return None
            return max(n - 1, 0)
        with self._open() as fh:
            return sum(1 for line in fh if line.strip())

    def _load_array(self) -> list[Any]:
        if self._array is None:
            data = self._read_all()
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                where = not_utf8(data)
                if where is not None:
                    raise CliError(f"{self.name}:{where[0]}: {where[1]}") from None
                raise CliError(f"{self.name}:{exc.lineno}: {json_error(exc)}") from None
            if isinstance(value, dict) and self.stream is not None:
                value = [value]  # one case, sent as one object
            if not isinstance(value, list):
                raise CliError(
                    f"{self.name}:1: expected a JSON array of cases or NDJSON (one case a line)"
                )
            self._array, self._array_text = value, data
        return self._array

    def batches(self, size: int, skip: int = 0) -> Iterator[list[Item]]:
        """Items in batches of `size`, after the first `skip` (read past, not converted)."""
        items = {
            "array": self._array_items,
            "ndjson": self._ndjson_items,
            "csv": self._csv_items,
            "parquet": self._parquet_items,
        }
        batch: list[Item] = []
        for item in items[self.kind](skip):
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _ndjson_items(self, skip: int = 0) -> Iterator[Item]:
        with self._open() as fh:
            index = 0
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if index < skip:
                    index += 1
                    continue
                try:
                    yield Item(index, n, orjson.loads(line.rstrip()))
                except orjson.JSONDecodeError as exc:
                    # Bytes that are not UTF-8 are part of what is wrong: shown as U+FFFD.
                    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                    where = not_utf8(line)
                    error = where[1] if where is not None else json_error(exc)
                    yield Item(index, n, error=error, raw=text)
                index += 1
            self.items_read = index

    def _array_items(self, skip: int = 0) -> Iterator[Item]:
        # Line 0 until asked: finding each item's line costs a second parse.
        array = self._load_array()
        for index in range(skip, len(array)):
            yield Item(index, 0, array[index])
        self.items_read = len(array)

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

    def _csv_items(self, skip: int = 0) -> Iterator[Item]:
        csv.field_size_limit(max(csv.field_size_limit(), CSV_CELL_LIMIT))
        # surrogateescape: a record with bytes that are not UTF-8 is refused on its own.
        with io.TextIOWrapper(
            self._open(), encoding="utf-8", errors="surrogateescape", newline=""
        ) as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if self.mapping is not None:
                convert = self.mapping.case
                self.mapping.check_header(header, self.name)
            else:
                convert = row_to_case
                unknown = [c for c in header if c not in CSV_COLUMNS]
                if unknown or not header:
                    raise CliError(
                        f"{self.name}:1: "
                        + (f"unknown column {unknown[0]!r}" if unknown else "no header")
                        + "; the columns are those of `failcat export cases --format csv`"
                        " (or give --mapping FILE)"
                    )
                twice = [c for c in header if header.count(c) > 1]
                if twice:  # only the last would be read: the other's cells dropped
                    raise CliError(f"{self.name}:1: column {twice[0]!r} is in the header twice")
            start = 2  # after the header (a header with a quoted newline is not supported)
            rows = enumerate(reader)
            while True:
                try:
                    index, row = next(rows)
                except StopIteration:
                    break
                except csv.Error as exc:  # a cell over CSV_CELL_LIMIT: the rest is unreadable
                    raise CliError(f"{self.name}:{start}: {exc} (an unclosed quote?)") from None
                if index >= skip:
                    error = _undecodable_cell(row)
                    if error is None and None in row:
                        # Cells past the header's would be dropped: an unquoted comma has
                        # shifted the record, and its fields would land in the wrong columns.
                        error = (
                            f"{len(header) + len(row[None])} cells, the header has "
                            f"{len(header)} columns (a cell with an unquoted comma?)"
                        )
                    if error is not None:
                        yield Item(index, start, error=error, raw=_readable_cells(row))
                    else:
                        try:
                            yield Item(index, start, convert(row))
                        except ValueError as exc:
                            yield Item(index, start, error=str(exc), raw=row)
                start = reader.line_num + 1
                self.items_read = index + 1

    def _parquet(self) -> Any:
        from services.cli.export import pyarrow

        _, pq = pyarrow()
        if self.stream is not None and not isinstance(self.stream, io.BytesIO):
            self.stream = io.BytesIO(self.stream.read())  # Parquet is read from its end
        try:
            return pq.ParquetFile(self.stream if self.stream is not None else self.path)
        except Exception as exc:  # pyarrow's ArrowInvalid & co: not a Parquet file
            raise CliError(f"{self.name}: not a Parquet file ({exc})") from None

    def _parquet_items(self, skip: int = 0) -> Iterator[Item]:
        index = 0
        for batch in self._parquet().iter_batches(batch_size=500):
            for row in batch.to_pylist():
                if index < skip:
                    index += 1
                    continue
                parsed = {}  # set only once all parse: a row that fails is kept as read
                try:
                    for name in PARQUET_JSON_COLUMNS & row.keys():
                        if isinstance(row[name], str):
                            parsed[name] = orjson.loads(row[name])
                    row.update(parsed)
                    yield Item(index, index + 1, row)
                except orjson.JSONDecodeError as exc:
                    yield Item(index, index + 1, error=f"{name}: {json_error(exc)}", raw=row)
                index += 1
        self.items_read = index
