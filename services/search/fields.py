"""The search document's one table: every field, its kind and what it can be used for.

Everything else is derived from FIELDS (through DocumentSchema): the OpenSearch mapping, the
SQLite tables and FTS5 columns with their weights, the query language's field names and
aliases, the facets, the sorts, the filter type (`SearchFilter`) and the normalizer of
incoming documents. Adding a searchable field is one line here plus its value in the
catalog's producer (services/catalog/document.py):

    Field("labels", Kind.KEYWORD, many=True, facet=True),      # a list of keywords
    Field("redaction", Kind.KEYWORD, values=("none", "partial", "full"), facet=True),
    Field("suite", Kind.KEYWORD, facet=True),                  # one keyword

A changed table changes the index's fingerprint: the indexer then rebuilds the index from the
catalog (services/search/service.py), so existing documents get the new field too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from services.catalog.schemas import Status
from shared.redaction import PII_KINDS
from shared.vocabulary import CONTEXT_EVENT_KINDS, SENSITIVITIES, SEVERITIES

# The case's curation states, as the catalog's wire format defines them.
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
ANNOTATION_STATES = ("none", "in_progress", "submitted", "adjudicated")


class Kind(StrEnum):
    TEXT = "text"  # analysed full text (English stemming): words, phrases, prefixes
    KEYWORD = "keyword"  # exact values: term, prefix and exists queries, facets
    MAP = "map"  # a string map, queried and faceted per key as <name>.<key>
    NUMBER = "number"  # ranges: confidence:<0.3
    DATE = "date"  # ranges, absolute and relative: occurred:>now-7d


class Case(StrEnum):
    """How a keyword forgives case (a closed value set is always matched in any case)."""

    FOLD = "fold"  # a folded copy is indexed beside the stored spelling (facets show the latter)
    LOWER = "lower"  # values are lower-case by construction (ids): only the query is folded


def fold(value: str) -> str:
    """The one case folding: the query side and the embedded index use it, and OpenSearch's
    `folded` normalizer (a lowercase filter) does the same to what it indexes."""
    return value.lower()


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the document key, the index field and the query name
    kind: Kind
    aliases: tuple[str, ...] = ()  # other names in queries (a MAP's first alias is its prefix)
    weight: float = 1.0  # TEXT: relevance weight of a match in this field
    many: bool = False  # KEYWORD: a list of values (a case with several matches each)
    values: tuple[str, ...] = ()  # KEYWORD: a closed value set, in its canonical spelling
    ordered: bool = False  # with values: compared by position (severity:<=S1)
    facet: bool = False  # offered as a facet and as a filter selection (SearchFilter)
    sort: bool = False  # offered as the sorts `name` and `-name`
    case: Case = Case.FOLD  # KEYWORD without values: how case is forgiven
    default: str | None = None  # stored when the producer gives no value
    also: tuple[str, ...] = ()  # a term on this field also matches these (a mode's parent)

    @property
    def rank(self) -> str | None:
        """A sortable ordered keyword stores its position as a number: `<name>_rank`."""
        return f"{self.name}_rank" if self.ordered and self.sort else None

    @property
    def folded(self) -> bool:
        """Matched against an indexed folded copy rather than the stored value itself."""
        return self.kind is Kind.KEYWORD and not self.values and self.case is Case.FOLD

    def match_value(self, raw: str) -> str | None:
        """The value a term compares with: the canonical spelling of a closed set (None if
        it is not one of them), otherwise the folded value."""
        if self.values:
            lowered = fold(raw)
            return next((v for v in self.values if fold(v) == lowered), None)
        return fold(raw)


FIELDS: tuple[Field, ...] = (
    # -- full text, by weight: a title match counts most
    Field("title", Kind.TEXT, weight=3.0),
    Field("summary", Kind.TEXT),
    Field("impact", Kind.TEXT),
    Field("writeup_hypothesis", Kind.TEXT, ("hypothesis",)),
    Field("writeup_experiments", Kind.TEXT, ("experiments",)),
    Field("writeup_results", Kind.TEXT, ("results",)),
    Field("writeup_rationale", Kind.TEXT, ("rationale",)),
    # the captured payload as text (the producer flattens the JSON, after redaction); a
    # match there counts for less than one in the write-up
    Field("input", Kind.TEXT, weight=0.5),
    Field("prediction", Kind.TEXT, weight=0.5),
    Field("expected", Kind.TEXT, weight=0.5),
    # -- keywords
    Field("id", Kind.KEYWORD, case=Case.LOWER),
    Field("model", Kind.KEYWORD, facet=True),
    Field("model_version", Kind.KEYWORD, ("version",), facet=True),
    Field("data_source", Kind.KEYWORD, ("source",), facet=True),
    Field("failure_mode", Kind.KEYWORD, ("mode",), facet=True, also=("failure_mode_parent",)),
    Field("failure_mode_parent", Kind.KEYWORD, facet=True),
    Field("severity", Kind.KEYWORD, values=SEVERITIES, ordered=True, facet=True, sort=True),
    Field("status", Kind.KEYWORD, values=STATUSES, facet=True),
    Field("team", Kind.KEYWORD, facet=True),
    Field("tags", Kind.KEYWORD, ("tag",), many=True, facet=True),
    Field(
        "sensitivity",
        Kind.KEYWORD,
        values=SENSITIVITIES,
        ordered=True,
        facet=True,
        default="internal",
    ),
    Field("group_id", Kind.KEYWORD, ("group",), case=Case.LOWER),
    Field("merged_into_id", Kind.KEYWORD, case=Case.LOWER),
    # Kinds of the context events that preceded the case in its scope within 7 days
    # (services/catalog/context_events.py): after_event:deploy
    Field("after_event", Kind.KEYWORD, many=True, values=CONTEXT_EVENT_KINDS, facet=True),
    # -- annotation state (services/annotation/search_state.py): submitted by k annotators,
    # where it stands, the lowest share of fields its annotators agree on, those they do not,
    # and who may not read it yet (search hides what they must not learn: the blind-read rule)
    Field("annotated_by", Kind.NUMBER),
    Field("annotation_status", Kind.KEYWORD, values=ANNOTATION_STATES, facet=True),
    Field("agreement", Kind.NUMBER),
    Field("disagreement", Kind.KEYWORD, many=True, facet=True),
    Field("blinded", Kind.KEYWORD, many=True),
    Field("pii", Kind.KEYWORD, many=True, values=PII_KINDS, facet=True),  # kinds redacted
    # -- the rest
    Field("environment", Kind.MAP, ("env",)),
    Field("occurred_at", Kind.DATE, ("occurred",), sort=True),
    Field("received_at", Kind.DATE, ("received",)),
    Field("confidence", Kind.NUMBER),
    Field("latency_ms", Kind.NUMBER, ("latency",)),
)

HISTOGRAM_INTERVALS: tuple[str, ...] = ("hour", "day", "week", "month")
# What every sort falls back on after its own key: newest first, then the unique id.
TIEBREAK_DATE = "occurred_at"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str  # a document field (or "_score", "id")
    descending: bool
    missing: int | None = None  # the value sorted in for a document without one


@dataclass(frozen=True)
class DocumentSchema:
    """FIELDS and what is derived from them; backends and the parser each take one."""

    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"a search field is declared twice: {names}")
        for f in self.fields:
            if not _NAME.match(f.name):
                raise ValueError(f"search field name {f.name!r} is not a lower-case identifier")
        if sum(f.kind is Kind.MAP for f in self.fields) > 1:
            raise ValueError("the search document holds one string map (environment)")
        for required in ("id", "team", "sensitivity"):  # identity and visibility
            if required not in names:
                raise ValueError(f"the search document needs the field {required!r}")

    def extend(self, *fields: Field) -> DocumentSchema:
        """This table plus `fields` (an extension hook: tests, and services that join)."""
        return DocumentSchema((*self.fields, *fields))

    # ---- lookups ----------------------------------------------------------------------------

    @cached_property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields} | {a: f for f in self.fields for a in f.aliases}

    def __getitem__(self, name: str) -> Field:
        return self.by_name[name]

    def of(self, kind: Kind) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind is kind)

    @cached_property
    def text(self) -> tuple[Field, ...]:
        return self.of(Kind.TEXT)

    @cached_property
    def text_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.text)

    @cached_property
    def scalar_keywords(self) -> tuple[Field, ...]:
        """Keywords with one value: one column each in SQLite."""
        return tuple(f for f in self.of(Kind.KEYWORD) if not f.many)

    @cached_property
    def list_keywords(self) -> tuple[Field, ...]:
        return tuple(f for f in self.of(Kind.KEYWORD) if f.many)

    @cached_property
    def map(self) -> Field | None:
        maps = self.of(Kind.MAP)
        return maps[0] if maps else None

    @property
    def map_prefix(self) -> str:
        """What the map's keys are written after: env.region."""
        assert self.map is not None
        return (self.map.aliases or (self.map.name,))[0]

    @cached_property
    def ranks(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.rank)

    def map_key(self, name: str) -> str | None:
        """The key of a map field name (`env.region` -> `region`), or None if not one."""
        if self.map is None or "." not in name:
            return None
        head, key = name.split(".", 1)
        return key if head.lower() in (self.map.name, *self.map.aliases) else None

    def field_names(self) -> list[str]:
        """What an error message lists as the valid fields (names and aliases, env.<key>)."""
        names = sorted(n for n, f in self.by_name.items() if f.kind is not Kind.MAP)
        return [*names, f"{self.map_prefix}.<key>"] if self.map else names

    # ---- facets and sorts -------------------------------------------------------------------

    def facet_field(self, name: str) -> str | None:
        """The canonical facet name for `name` (aliases allowed, env.<key> kept), or None."""
        if self.map is not None:
            if name in (self.map.name, *self.map.aliases):
                return self.map_prefix  # buckets are the map's keys
            key = self.map_key(name)
            if key is not None:
                return f"{self.map_prefix}.{key}" if key else None
        found = self.by_name.get(name)
        return found.name if found and found.facet else None

    def facet_names(self) -> list[str]:
        names = sorted(f.name for f in self.fields if f.facet)
        return [*names, self.map_prefix, f"{self.map_prefix}.<key>"] if self.map else names

    @cached_property
    def sorts(self) -> dict[str, tuple[SortKey, ...]]:
        """Each sort's keys, the last always the unique id. An ordered keyword sorts by its
        position (S0 first), then newest first; documents without a value sort last."""
        out: dict[str, tuple[SortKey, ...]] = {
            "relevance": (SortKey("_score", True), SortKey("id", False))
        }
        for f in self.fields:
            if not f.sort:
                continue
            if f.kind is Kind.DATE:
                out[f.name] = (SortKey(f.name, False), SortKey("id", False))
                out[f"-{f.name}"] = (SortKey(f.name, True), SortKey("id", False))
            elif f.rank:
                newest = SortKey(TIEBREAK_DATE, True)
                last = 99  # past every position: sorts last ascending
                out[f.name] = (SortKey(f.rank, False, last), newest, SortKey("id", False))
                out[f"-{f.name}"] = (SortKey(f.rank, True, -1), newest, SortKey("id", False))
            else:
                raise ValueError(f"field {f.name!r} cannot be a sort")
        return out

    @cached_property
    def fingerprint(self) -> str:
        """Changes whenever the table does: an index built for another one is rebuilt."""
        import hashlib

        return hashlib.sha256(repr(self.fields).encode()).hexdigest()[:16]


SCHEMA = DocumentSchema(FIELDS)
