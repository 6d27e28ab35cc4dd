"""`failcat ingest --mapping FILE`: how the columns of someone else's CSV become case fields.

The file is YAML or JSON (JSON is read as YAML too):

    columns:
      incident_id: external_id                 # a column -> a field path (text)
      date: occurred_at
      score: {path: confidence, type: number}  # with a conversion
      parties: {path: input.parties, type: json}
      labels: {path: tags, type: list}         # "a, b" -> ["a", "b"]
    defaults:                                  # fields every case gets unless a column sets them
      model: {name: incident-classifier, version: "1.0"}
      data_source: aiid

Types: `string` (the default), `number`, `integer`, `boolean` (true/false/yes/no/1/0),
`json` (the cell is JSON text), `list` (comma-separated). An empty cell sets nothing. Columns
the mapping does not name are ignored; a column it names that the header lacks, or has more
than once, stops the run before anything is sent. Every problem with the file itself is one
line naming the file and the entry, exit code 2.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from services.catalog.export import WIRE_KEYS
from services.cli.errors import CliError

TYPES = ("string", "number", "integer", "boolean", "json", "list")
TOP_KEYS = ("columns", "defaults")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


@dataclass(frozen=True, slots=True)
class Column:
    column: str
    path: tuple[str, ...]
    type: str


def _convert(text: str, kind: str, column: str) -> Any:
    try:
        if kind == "number":
            return float(text)
        if kind == "integer":
            return int(text)
    except ValueError:
        raise ValueError(f"{column}: not {'a number' if kind == 'number' else 'an integer'}: "
                         f"{text!r}") from None  # fmt: skip
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{column}: not a boolean: {text!r}")
    if kind == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{column}: invalid JSON at column {exc.colno}: {exc.msg}") from None
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _set(case: dict[str, Any], path: tuple[str, ...], value: Any, column: str) -> None:
    target = case
    for segment in path[:-1]:
        inner = target.setdefault(segment, {})
        if not isinstance(inner, dict):
            raise ValueError(f"{column}: {'.'.join(path)}: {segment} is not an object")
        target = inner
    target[path[-1]] = value


class ColumnMapping:
    def __init__(self, columns: list[Column], defaults: dict[str, Any]) -> None:
        self.columns = columns
        self.defaults = defaults

    @classmethod
    def load(cls, path: Path) -> ColumnMapping:
        where = f"mapping {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CliError(f"{where}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{where}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CliError(f"{where}: not valid YAML or JSON{line}: {problem}") from None
        return cls.parse(data, where)

    @classmethod
    def parse(cls, data: Any, where: str) -> ColumnMapping:
        if not isinstance(data, dict) or "columns" not in data:
            raise CliError(
                f"{where}: expected an object with `columns` (CSV column -> case field path)"
            )
        unknown = [k for k in data if k not in TOP_KEYS]
        if unknown:
            raise CliError(f"{where}: unknown key {unknown[0]!r} (the keys are columns, defaults)")
        raw = data["columns"]
        if not isinstance(raw, dict) or not raw:
            raise CliError(f"{where}: columns: expected a non-empty object")
        columns, targets = [], {}
        for column, spec in raw.items():
            entry = f"{where}: columns.{column}"
            if isinstance(spec, str):
                spec = {"path": spec}
            if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
                raise CliError(f"{entry}: expected a field path or {{path, type}}")
            extra = set(spec) - {"path", "type"}
            if extra:
                raise CliError(f"{entry}: unknown key {sorted(extra)[0]!r} (path, type)")
            kind = spec.get("type", "string")
            if kind not in TYPES:
                raise CliError(f"{entry}: unknown type {kind!r} (one of {', '.join(TYPES)})")
            path = tuple(spec["path"].strip().split("."))
            if not all(path) or path[0] not in WIRE_KEYS:
                raise CliError(
                    f"{entry}: {spec['path']!r} is not a case field path (a dotted path "
                    f"starting with one of {', '.join(WIRE_KEYS)})"
                )
            dotted = ".".join(path)
            if dotted in targets:
                raise CliError(f"{entry}: {dotted} is already set by column {targets[dotted]!r}")
            targets[dotted] = str(column)
            columns.append(Column(str(column), path, kind))
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise CliError(f"{where}: defaults: expected an object of case fields")
        bad = [k for k in defaults if k not in WIRE_KEYS]
        if bad:
            raise CliError(f"{where}: defaults.{bad[0]}: not a case field")
        return cls(columns, defaults)

    def check_header(self, header: Iterable[str], source: str) -> None:
        present = set(header)
        if not present:
            raise CliError(f"{source}:1: no header")
        missing = [c.column for c in self.columns if c.column not in present]
        if missing:
            raise CliError(
                f"{source}:1: the mapping names column {missing[0]!r}, which the header lacks"
            )
        header = list(header)
        # A record is read by column name: of two columns with one name only the last would
        # be read, and the other's cells dropped without a word.
        twice = [c.column for c in self.columns if header.count(c.column) > 1]
        if twice:
            where = ", ".join(str(i + 1) for i, name in enumerate(header) if name == twice[0])
            raise CliError(
                f"{source}:1: the mapping names column {twice[0]!r}, which the header has "
                f"more than once (columns {where}): rename one"
            )

    def case(self, row: dict[str, str | None]) -> dict[str, Any]:
        """A CSV record -> a case. Raises ValueError naming the column (reported by line)."""
        case: dict[str, Any] = copy.deepcopy(self.defaults) if self.defaults else {}
        for c in self.columns:
            text = row.get(c.column)
            if text is None or text == "":
                continue
            _set(case, c.path, _convert(text, c.type, c.column), c.column)
        return case
