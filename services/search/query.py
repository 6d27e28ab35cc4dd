"""The search query language: tokenizer, recursive-descent parser and the AST both backends compile.

Grammar and examples: QUERY.md. Values are resolved here, once (severity to its rank,
relative dates to epoch milliseconds, sensitivity comparisons to a value set), so the two
backends compile identical, already-validated trees and cannot disagree on meaning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.search.fields import SCHEMA, DocumentSchema, Field, Kind, fold
from shared.errors import BadUserInput, FieldError

MAX_QUERY_CHARS = 2000
MAX_DEPTH = 32
MAX_CLAUSES = 200

# Lucene's English stop set: OpenSearch's english analyzer drops these, so a bare stopword
# would match nothing there and almost everything in FTS5. Both backends ignore them instead.
_STOPWORDS = "a an and are as at be but by for if in into is it no not of on or such that the"
STOPWORDS = frozenset((_STOPWORDS + " their then there these they this to was will with").split())


# ---- AST ------------------------------------------------------------------------------------


class Node:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class MatchAll(Node):
    pass


@dataclass(frozen=True, slots=True)
class Text(Node):
    """Full text: a word, an exact phrase or (prefix) the start of a word, in one text field
    or (field None) all of them. A prefix matches the words as written, not their stems
    (`injectio*` finds "injection", whose stem is "inject"), and does not score."""

    value: str
    phrase: bool = False
    field: str | None = None
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Term(Node):
    """Exact match of a keyword field (tags, env.<key>, severity ...) against any of values."""

    field: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Prefix(Node):
    """A keyword field (or env.<key>) whose value starts with `value` (folded, as Term's)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Range(Node):
    """Numeric range; dates are epoch milliseconds, severity is `severity_rank`."""

    field: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True, slots=True)
class Exists(Node):
    field: str


@dataclass(frozen=True, slots=True)
class Not(Node):
    child: Node


@dataclass(frozen=True, slots=True)
class And(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or(Node):
    children: tuple[Node, ...]


def and_of(nodes: list[Node]) -> Node:
    kept = [n for n in nodes if not isinstance(n, MatchAll)]
    if not kept:
        return MatchAll()
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def or_of(nodes: list[Node]) -> Node:
    if any(isinstance(n, MatchAll) for n in nodes):
        return MatchAll()
    return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))


def walk(node: Node):
    yield node
    if isinstance(node, Not):
        yield from walk(node.child)
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from walk(child)


def positive_text(node: Node) -> list[Text]:
    """Text leaves (not prefixes) not under a negation: what relevance scoring and
    highlighting use."""
    if isinstance(node, Text):
        return [] if node.prefix else [node]
    if isinstance(node, And | Or):
        return [t for c in node.children for t in positive_text(c)]
    return []


# ---- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # WORD PHRASE FIELD VALUE VALUE_PHRASE LPAREN RPAREN OR AND NOT END
    text: str
    col: int  # 1-based column of the token's first character


_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*:")
_STOP_CHARS = ' \t\r\n()"'


def _error(col: int, message: str) -> BadUserInput:
    text = f"column {col}: {message}"
    return BadUserInput(f"invalid search query: {text}", [FieldError("query", text)])


def tokenize(src: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif c == "(":
            tokens.append(Token("LPAREN", c, col))
            i += 1
        elif c == ")":
            tokens.append(Token("RPAREN", c, col))
            i += 1
        elif c == '"':
            end = src.find('"', i + 1)
            if end < 0:
                raise _error(col, "unterminated phrase: expected a closing '\"'")
            tokens.append(Token("PHRASE", src[i + 1 : end], col))
            i = end + 1
        elif c == "-" and (i + 1 == n or src[i + 1] in " \t\r\n)"):
            raise _error(col, "expected a term after '-' (quote it to search for a dash)")
        elif c == "-":
            # A leading '-' directly before a term negates it ("-status:resolved").
            tokens.append(Token("NOT", "-", col))
            i += 1
        else:
            m = _FIELD_RE.match(src, i)
            if m:
                tokens.append(Token("FIELD", m.group()[:-1], col))
                i = m.end()
                # The value is read raw, so "confidence:-1" or "status:OR" stay values.
                if i < n and src[i] == '"':
                    end = src.find('"', i + 1)
                    if end < 0:
                        raise _error(i + 1, "unterminated phrase: expected a closing '\"'")
                    tokens.append(Token("VALUE_PHRASE", src[i + 1 : end], i + 1))
                    i = end + 1
                elif i < n and src[i] not in _STOP_CHARS:
                    j = i
                    while j < n and src[j] not in _STOP_CHARS:
                        j += 1
                    tokens.append(Token("VALUE", src[i:j], i + 1))
                    i = j
                continue
            j = i
            while j < n and src[j] not in _STOP_CHARS:
                j += 1
            word = src[i:j]
            kind = {"OR": "OR", "AND": "AND", "NOT": "NOT"}.get(word, "WORD")
            tokens.append(Token(kind, word, col))
            i = j
    tokens.append(Token("END", "", n + 1))
    return tokens


# ---- parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str, now: datetime, schema: DocumentSchema) -> None:
        self.tokens = tokenize(src)
        self.pos = 0
        self.now = now
        self.schema = schema
        self.depth = 0
        self.clauses = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "END":
            return MatchAll()
        node = self.or_expr()
        tok = self.peek()
        if tok.kind == "RPAREN":
            raise _error(tok.col, "unexpected ')' without a matching '('")
        if tok.kind != "END":  # pragma: no cover - or_expr consumes every other token
            raise _error(tok.col, f"unexpected {tok.text!r}")
        return node

    def or_expr(self) -> Node:
        nodes = [self.and_expr()]
        while self.peek().kind == "OR":
            op = self.take()
            if self.peek().kind in ("END", "RPAREN", "OR", "AND"):
                raise _error(op.col, "expected a term after OR")
            nodes.append(self.and_expr())
        return or_of(nodes)

    def and_expr(self) -> Node:
        nodes = [self.unary()]
        while self.peek().kind not in ("END", "RPAREN", "OR"):
            if self.peek().kind == "AND":
                op = self.take()
                if self.peek().kind in ("END", "RPAREN", "OR", "AND"):
                    raise _error(op.col, "expected a term after AND")
            nodes.append(self.unary())
        return and_of(nodes)

    def unary(self) -> Node:
        # A run of negations is read in a loop and an even count cancels: `--x` is `x`.
        # Nested, each would be a level of the compiled query (SQLite's parser overflowed
        # at ~20) and of this recursion.
        negated = False
        while (tok := self.peek()).kind == "NOT":
            self.take()
            if self.peek().kind in ("END", "RPAREN", "OR", "AND"):
                raise _error(tok.col, f"expected a term after {tok.text!r}")
            negated = not negated
        child = self.primary()
        if not negated or isinstance(child, MatchAll):
            return child
        return child.child if isinstance(child, Not) else Not(child)  # -(-x) is x too

    def primary(self) -> Node:
        tok = self.take()
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise _error(tok.col, f"query has more than {MAX_CLAUSES} terms (the limit)")
        if tok.kind == "LPAREN":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _error(tok.col, f"parentheses nested deeper than {MAX_DEPTH} (the limit)")
            if self.peek().kind == "RPAREN":
                raise _error(self.peek().col, "expected a term inside '()'")
            node = self.or_expr()
            close = self.take()
            if close.kind != "RPAREN":
                raise _error(close.col, f"expected ')' to close '(' at column {tok.col}")
            self.depth -= 1
            return node
        if tok.kind == "PHRASE":
            phrase = _trimmed(tok.text)
            return Text(phrase, phrase=True) if phrase else MatchAll()
        if tok.kind == "WORD":
            return _free_word(tok.text, tok.col)
        if tok.kind == "FIELD":
            return self.field_term(tok)
        if tok.kind in ("OR", "AND"):
            raise _error(tok.col, f"expected a term before {tok.text}")
        if tok.kind == "RPAREN":
            raise _error(tok.col, "unexpected ')' without a matching '('")
        raise _error(tok.col, "expected a term, got the end of the query")

    def field_term(self, tok: Token) -> Node:
        name = tok.text
        field = _resolve_field(self.schema, name, tok.col)
        nxt = self.peek()
        if nxt.kind == "VALUE_PHRASE":
            self.take()
            return _compile_value(field, name, "=", nxt.text, nxt.col, True, self.now)
        if nxt.kind == "VALUE":
            self.take()
            raw, op, skip = nxt.text, "=", 0
            for candidate in ("<=", ">=", "<", ">", "="):
                if raw.startswith(candidate):
                    op, raw, skip = candidate, raw[len(candidate) :], len(candidate)
                    break
            if not raw:
                raise _error(nxt.col + skip, f"expected a value after '{name}:{op}'")
            return _compile_value(field, name, op, raw, nxt.col + skip, False, self.now)
        raise _error(tok.col + len(name) + 1, f"expected a value after '{name}:'")


MIN_PREFIX = 2


def _word_prefix(word: str, col: int, field: str | None = None) -> Text:
    """`injectio*`: the start of one word (letters and digits), at least MIN_PREFIX long."""
    stem = word[:-1]
    if len(stem) < MIN_PREFIX or not stem.isalnum():
        raise _error(
            col,
            f"a prefix search takes {MIN_PREFIX} or more letters or digits before '*', "
            f"got '{word}' (quote it to search for the '*')",
        )
    return Text(stem, field=field, prefix=True)


def _free_word(word: str, col: int) -> Node:
    if len(word) > 1 and word.endswith("*"):
        return _word_prefix(word, col)
    if _no_words(word):
        return MatchAll()
    return Text(word)


def _no_words(text: str) -> bool:
    """Stopwords and punctuation analyse to no token in OpenSearch (its english analyzer), so
    a word or phrase of nothing else ("the", "of the", "!!!") matched no case there and,
    FTS5 keeping stopwords, most cases embedded: both ignore it instead."""
    words = "".join(ch if ch.isalnum() else " " for ch in text).split()
    return all(w.lower() in STOPWORDS for w in words)


def _trimmed(phrase: str) -> str:
    """The phrase without the stopwords at its ends ("" if nothing else): OpenSearch drops
    them ("the facial recognition" is "facial recognition" there), FTS5 looked for them."""
    parts = phrase.split()
    while parts and _no_words(parts[0]):
        parts.pop(0)
    while parts and _no_words(parts[-1]):
        parts.pop()
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class _Target:
    """What a `field:` resolved to: a field of the table, or one key of the map field."""

    field: Field
    schema: DocumentSchema
    key: str | None = None

    @property
    def name(self) -> str:
        return f"{self.schema.map_prefix}.{self.key}" if self.key is not None else self.field.name


def _resolve_field(schema: DocumentSchema, name: str, col: int) -> _Target:
    """The canonical field for `name` ("env.region" stays as it is)."""
    key = schema.map_key(name)
    if key is not None:
        if not key:
            raise _error(col, f"expected a key after '{schema.map_prefix}.'")
        assert schema.map is not None
        return _Target(schema.map, schema, key)
    field = schema.by_name.get(name.lower())
    if field is None or field.kind is Kind.MAP:
        hint = (
            f"use {schema.map_prefix}.<key>:value for the {field.name}; "
            if field is not None
            else ""
        )
        raise _error(
            col,
            f"unknown field '{name}'; {hint}valid fields: " + ", ".join(schema.field_names()),
        )
    return _Target(field, schema)


def _comparable(schema: DocumentSchema) -> str:
    return ", ".join(
        f.name for f in schema.fields if f.ordered or f.kind in (Kind.NUMBER, Kind.DATE)
    )


def _compile_value(
    target: _Target, name: str, op: str, raw: str, col: int, quoted: bool, now: datetime
) -> Node:
    spec, field = target.field, target.name
    kind = spec.kind
    comparable = _comparable(target.schema)
    # Before the text branch: a full-text `title:*` is "has a value" too, not a search for
    # the word "*" (which analyses to nothing and so matched no case).
    if raw == "*" and not quoted and op == "=":
        return Exists(field)
    if kind is Kind.TEXT:
        if op != "=":
            raise _error(
                col - len(op),
                f"field '{name}' is full text and does not support '{op}'; "
                f"comparisons work on {comparable}",
            )
        if not quoted and len(raw) > 1 and raw.endswith("*"):
            return _word_prefix(raw, col, field)
        raw = _trimmed(raw) if quoted else raw
        if _no_words(raw):
            return MatchAll()
        return Text(raw, phrase=quoted, field=field)
    prefix = not quoted and op == "=" and raw.endswith("*") and ".." not in raw
    if prefix and kind not in (Kind.KEYWORD, Kind.MAP):
        raise _error(col, f"field '{name}' does not support a prefix ('*'); it takes a value")
    if kind in (Kind.KEYWORD, Kind.MAP) and (prefix or not spec.ordered):
        if op != "=":
            raise _error(
                col - len(op),
                f"field '{name}' does not support '{op}'; comparisons work on {comparable}",
            )
        # `also`: a top-level failure mode matches its sub-modes too (failure_mode:label_noise).
        fields = (field,) if target.key is not None else (field, *spec.also)
        if spec.values:
            # A closed set: its canonical spelling, whatever the case written; a prefix
            # stands for the values it starts.
            if prefix:
                values = tuple(v for v in spec.values if fold(v).startswith(fold(raw[:-1])))
            else:
                values = tuple(v for v in (spec.match_value(raw),) if v is not None)
            if not values:
                raise _error(
                    col, f"expected one of {', '.join(spec.values)} for '{name}', got '{raw}'"
                )
            return or_of([Term(f, values) for f in fields])
        if prefix:
            return or_of([Prefix(f, fold(raw[:-1])) for f in fields])
        # Any other keyword matches in any case: its folded value against a folded index.
        return or_of([Term(f, (fold(raw),)) for f in fields])
    lo, hi = _split_range(raw, op, col, name)
    if kind is Kind.KEYWORD:
        return _ordinal(field, spec.rank, spec.values, name, op, raw, lo, hi, col)
    if kind is Kind.NUMBER:

        def num(text: str, at: int) -> float:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            # float() also reads nan, inf and overflows (1e999) to inf: no stored value
            # compares meaningfully with those, so they are refused as other non-numbers.
            if not math.isfinite(value):
                raise _error(at, f"expected a number for '{name}', got '{text}'")
            return value

        return _range_node(field, op, lo, hi, num, col, raw, name)
    if kind is Kind.DATE:
        return _date_node(field, name, op, lo, hi, col, raw, now)
    raise _error(col, f"field '{name}' cannot be searched")  # pragma: no cover


def _split_range(raw: str, op: str, col: int, name: str) -> tuple[str | None, str | None]:
    if ".." not in raw:
        return raw, None
    if op != "=":
        raise _error(col, f"a range 'a..b' for '{name}' takes no '{op}'")
    lo, _, hi = raw.partition("..")
    if not lo or not hi:
        raise _error(col, f"expected a range 'from..to' for '{name}' (use * for an open end)")
    return (None if lo == "*" else lo), (None if hi == "*" else hi)


def _backwards(name: str, raw: str, col: int) -> BadUserInput:
    # Such a range matched no case, silently, as if no case were in it.
    return _error(col, f"the range '{raw}' for '{name}' ends before it starts")


def _range_node(field, op, lo, hi, conv, col, raw, name) -> Node:
    if ".." in raw:
        gte = None if lo is None else conv(lo, col)
        lte = None if hi is None else conv(hi, col + raw.index("..") + 2)
        if gte is not None and lte is not None and gte > lte:
            raise _backwards(name, raw, col)
        return Range(field, gte=gte, lte=lte)
    value = conv(lo, col)
    if op == "=":
        return Range(field, gte=value, lte=value)
    return Range(field, **{{"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]: value})


def _ordinal(field, rank_field, order, name, op, raw, lo, hi, col) -> Node:
    folded = [fold(v) for v in order]

    def rank(text: str, at: int) -> int:
        if fold(text) not in folded:
            raise _error(at, f"expected one of {', '.join(order)} for '{name}', got '{text}'")
        return folded.index(fold(text))

    if ".." in raw:
        a = 0 if lo is None else rank(lo, col)
        b = len(order) - 1 if hi is None else rank(hi, col + raw.index("..") + 2)
        ranks = range(min(a, b), max(a, b) + 1)
    else:
        r = rank(lo, col)
        ranks = {
            "=": range(r, r + 1),
            "<": range(0, r),
            "<=": range(0, r + 1),
            ">": range(r + 1, len(order)),
            ">=": range(r, len(order)),
        }[op]
    values = tuple(order[i] for i in ranks)
    if not values:
        return Not(MatchAll())
    if rank_field and len(values) > 1:
        return Range(rank_field, gte=ranks.start, lte=ranks.stop - 1)
    return Term(field, values)


_DAY_MS = 86_400_000
_RELATIVE = re.compile(r"^now(?:([+-])(\d+)([smhdwMy]))?$")
_UNIT_S = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
    "y": 365 * 86400,
}


def _date_node(field, name, op, lo, hi, col, raw, now) -> Node:
    """Dates become [start, end) intervals in epoch ms: a bare day covers the whole day."""

    def interval(text: str, at: int) -> tuple[int, int]:
        m = _RELATIVE.match(text)
        if m:
            delta = 0 if not m.group(1) else int(m.group(2)) * _UNIT_S[m.group(3)]
            try:
                t = (
                    now - timedelta(seconds=delta)
                    if m.group(1) == "-"
                    else now + timedelta(seconds=delta)
                )
            except OverflowError:
                # Past what a datetime holds (years 1..9999), as an absolute date would be.
                raise _error(
                    at, f"expected a date in the years 1 to 9999 for '{name}', got '{text}'"
                ) from None
            ms = int(t.timestamp() * 1000)
            return ms, ms + 1
        try:
            if len(text) == 10:
                d = date.fromisoformat(text)
                start = _ms(datetime(d.year, d.month, d.day, tzinfo=UTC))
                # In milliseconds: the day after 9999-12-31 is no datetime.
                return start, start + _DAY_MS
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
            t = t if t.tzinfo else t.replace(tzinfo=UTC)
            return _ms(t), _ms(t) + 1
        except ValueError:
            raise _error(
                at,
                f"expected a date for '{name}' (2026-01-31, "
                f"2026-01-31T12:00:00Z or now-7d), got '{text}'",
            ) from None

    if ".." in raw:
        gte = None if lo is None else interval(lo, col)[0]
        lt = None if hi is None else interval(hi, col + raw.index("..") + 2)[1]
        if gte is not None and lt is not None and gte >= lt:
            raise _backwards(name, raw, col)
        return Range(field, gte=gte, lt=lt)
    start, end = interval(lo, col)
    match op:
        case "=":
            return Range(field, gte=start, lt=end)
        case "<":
            return Range(field, lt=start)
        case "<=":
            return Range(field, lt=end)
        case ">":
            return Range(field, gte=end)
        case _:
            return Range(field, gte=start)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def parse(src: str, now: datetime | None = None, schema: DocumentSchema = SCHEMA) -> Node:
    """Parse a query into its AST; raise BadUserInput naming the column on any error."""
    if len(src) > MAX_QUERY_CHARS:
        raise _error(
            MAX_QUERY_CHARS + 1, f"query is longer than {MAX_QUERY_CHARS} characters (the limit)"
        )
    if "\x00" in src:
        # SQLite's FTS5 reads a MATCH string up to its first NUL (a phrase would end there,
        # unterminated), and no document holds one: refuse it where both engines see it.
        raise _error(src.index("\x00") + 1, "a NUL character is not allowed in a query")
    return _Parser(src, now or datetime.now(UTC), schema).parse()
