"""The fields of a search document, and what each can be used for (query, facet, sort).

One registry shared by the query parser, both backends, the REST route and the CLI, so a
field added here is known everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.vocabulary import SENSITIVITIES, SEVERITIES  # noqa: F401  (re-exported)


class Kind(StrEnum):
    TEXT = "text"  # analyzed full text (English), phrase-searchable
    KEYWORD = "keyword"  # exact value, facetable
    TAGS = "tags"  # list of exact values
    ENV = "env"  # string map; queried and faceted as env.<key>
    SEVERITY = "severity"  # S0..S4, compared by rank (S0 worst)
    SENSITIVITY = "sensitivity"  # public < internal < confidential < restricted
    NUMBER = "number"
    DATE = "date"


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # the document key
    kind: Kind
    aliases: tuple[str, ...] = ()

    @property
    def facetable(self) -> bool:
        return self.kind in (Kind.KEYWORD, Kind.TAGS, Kind.SEVERITY, Kind.SENSITIVITY)


TEXT_FIELDS: tuple[str, ...] = (
    "title",
    "summary",
    "impact",
    "writeup_hypothesis",
    "writeup_experiments",
    "writeup_results",
    "writeup_rationale",
)

FIELDS: tuple[Field, ...] = (
    Field("title", Kind.TEXT),
    Field("summary", Kind.TEXT),
    Field("impact", Kind.TEXT),
    Field("writeup_hypothesis", Kind.TEXT, ("hypothesis",)),
    Field("writeup_experiments", Kind.TEXT, ("experiments",)),
    Field("writeup_results", Kind.TEXT, ("results",)),
    Field("writeup_rationale", Kind.TEXT, ("rationale",)),
    Field("id", Kind.KEYWORD),
    Field("model", Kind.KEYWORD),
    Field("model_version", Kind.KEYWORD, ("version",)),
    Field("data_source", Kind.KEYWORD, ("source",)),
    Field("failure_mode", Kind.KEYWORD, ("mode",)),
    Field("failure_mode_parent", Kind.KEYWORD),
    Field("severity", Kind.SEVERITY),
    Field("status", Kind.KEYWORD),
    Field("team", Kind.KEYWORD),
    Field("tags", Kind.TAGS, ("tag",)),
    Field("sensitivity", Kind.SENSITIVITY),
    Field("environment", Kind.ENV, ("env",)),
    Field("group_id", Kind.KEYWORD, ("group",)),
    Field("merged_into_id", Kind.KEYWORD),
    Field("occurred_at", Kind.DATE, ("occurred",)),
    Field("received_at", Kind.DATE, ("received",)),
    Field("confidence", Kind.NUMBER),
    Field("latency_ms", Kind.NUMBER, ("latency",)),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS} | {a: f for f in FIELDS for a in f.aliases}

# Keyword columns stored as plain scalars in both backends (facets, filters, heatmaps).
SCALAR_KEYWORDS: tuple[str, ...] = tuple(
    f.name for f in FIELDS if f.kind in (Kind.KEYWORD, Kind.SEVERITY, Kind.SENSITIVITY)
)


SORTS: tuple[str, ...] = ("relevance", "occurred_at", "-occurred_at", "severity", "-severity")
HISTOGRAM_INTERVALS: tuple[str, ...] = ("hour", "day", "week", "month")


def field_names() -> list[str]:
    """What an error message lists as the valid fields (names and aliases, env.<key>)."""
    names = sorted(BY_NAME)
    names.remove("environment")
    names.remove("env")
    return [*names, "env.<key>"]


def facet_field(name: str) -> str | None:
    """The canonical facet name for `name` (aliases allowed, env.<key> kept), or None."""
    if name.startswith(("env.", "environment.")):
        key = name.split(".", 1)[1]
        return f"env.{key}" if key else None
    if name in ("env", "environment"):
        return "env"  # buckets are the environment keys
    field = BY_NAME.get(name)
    return field.name if field and field.facetable else None


def facet_names() -> list[str]:
    return [*sorted(f.name for f in FIELDS if f.facetable), "env", "env.<key>"]
