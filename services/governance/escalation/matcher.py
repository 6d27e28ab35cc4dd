"""A parsed search query (services/search/query.py) evaluated over one search document.

Rules are written in the search language but judged as each case is indexed, before the
index has refreshed: so they are evaluated here, in memory, over the document the indexer
just wrote, never by a search. Structured conditions (keywords, ranges, dates, env keys,
exists, boolean structure) mean exactly what they mean to both backends. Full-text words are
matched as words of the text fields with a light English suffix folding: an approximation of
the engines' stemmers, good for rule words such as `refund` or `"prompt injection"`; rules
that must be exact use structured fields (ESCALATION.md).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from services.search.documents import normalize, to_epoch_ms
from services.search.fields import SCHEMA, DocumentSchema, Kind, fold
from services.search.query import (
    And,
    Exists,
    MatchAll,
    Node,
    Not,
    Or,
    Prefix,
    Range,
    Term,
    Text,
)

_WORD = re.compile(r"[\w]+")
# Longest first: "ings" before "s". Enough for plural and tense variants of rule words.
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "s", "ly")


@lru_cache(maxsize=65536)  # words repeat across documents: fold each once
def stem(word: str) -> str:
    word = word.lower()
    for suffix in _SUFFIXES:
        if len(word) - len(suffix) >= 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class Document:
    """One case's search document, normalized as the index stores it, with its words."""

    def __init__(self, raw: dict[str, Any], schema: DocumentSchema = SCHEMA) -> None:
        self.schema = schema
        self.values = normalize(raw, schema)
        self._words: dict[str, list[str]] = {}
        self._stems: dict[str, tuple[list[str], frozenset[str]]] = {}

    @property
    def id(self) -> str:
        return self.values["id"]

    def words(self, field: str) -> list[str]:
        if field not in self._words:
            self._words[field] = _WORD.findall((self.values.get(field) or "").lower())
        return self._words[field]

    def stems(self, field: str) -> tuple[list[str], frozenset[str]]:
        """The field's words folded, in order (phrases) and as a set (words)."""
        if field not in self._stems:
            folded = [stem(w) for w in self.words(field)]
            self._stems[field] = (folded, frozenset(folded))
        return self._stems[field]

    def field_values(self, name: str) -> list[Any]:
        key = self.schema.map_key(name)
        if key is not None:
            env = self.values.get(self.schema.map.name) or {}  # type: ignore[union-attr]
            return [v for k, v in env.items() if fold(k) == fold(key)]
        value = self.values.get(name)
        if value is None:
            return []
        spec = self.schema.by_name.get(name)
        if spec is not None and spec.kind is Kind.DATE:
            return [to_epoch_ms(value)]
        return list(value) if isinstance(value, list) else [value]


def _text(doc: Document, node: Text) -> bool:
    fields = [node.field] if node.field else list(doc.schema.text_fields)
    wanted = [w.lower() for w in _WORD.findall(node.value)]
    if not wanted:
        return True
    target = [stem(w) for w in wanted]
    for name in fields:
        if node.prefix:
            if any(w.startswith(wanted[0]) for w in doc.words(name)):
                return True
            continue
        stems, known = doc.stems(name)
        if not node.phrase:
            if all(t in known for t in target):
                return True
            continue
        n = len(target)
        if any(stems[i : i + n] == target for i in range(len(stems) - n + 1)):
            return True
    return False


def matches(doc: Document, node: Node) -> bool:
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, And):
        return all(matches(doc, c) for c in node.children)
    if isinstance(node, Or):
        return any(matches(doc, c) for c in node.children)
    if isinstance(node, Not):
        return not matches(doc, node.child)
    if isinstance(node, Text):
        return _text(doc, node)
    if isinstance(node, Term):
        # Query values are canonical (closed sets) or folded; stored values are folded alike.
        wanted = {fold(v) for v in node.values}
        return any(fold(str(v)) in wanted for v in doc.field_values(node.field))
    if isinstance(node, Prefix):
        return any(fold(str(v)).startswith(node.value) for v in doc.field_values(node.field))
    if isinstance(node, Exists):
        return bool(doc.field_values(node.field))
    if isinstance(node, Range):
        values = doc.field_values(node.field)
        if not values:
            return False
        v = float(values[0])
        return (
            (node.gte is None or v >= node.gte)
            and (node.gt is None or v > node.gt)
            and (node.lte is None or v <= node.lte)
            and (node.lt is None or v < node.lt)
        )
    raise TypeError(f"unknown query node {node!r}")  # pragma: no cover - the AST is closed
