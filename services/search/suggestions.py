"""Did you mean: for a search that found nothing, the values closest to those it asked for.

Only for values the caller may see: the candidates are the facet buckets of everything
visible to the caller (the backend applies visibility as for any search), so a suggestion
never reveals a value of a case the caller cannot read.
"""

from __future__ import annotations

from difflib import SequenceMatcher

from services.search.fields import DocumentSchema, fold
from services.search.query import And, MatchAll, Node, Or, Term, or_of
from services.search.request import Bucket, SearchRequest, Suggestion

# How many distinct values per field are compared (the most frequent ones).
POOL = 1000
MAX_SUGGESTIONS = 5
CUTOFF = 0.6


def asked(request: SearchRequest, schema: DocumentSchema) -> list[tuple[str, str, Node]]:
    """(facet field, value, the condition alone) of every keyword the request requires,
    from the query (not under a negation: a value excluded is not a value looked for) and
    the selections. Closed value sets are left out: a value outside them is an error."""
    pairs: list[tuple[str, str]] = []

    def walk(node: Node) -> None:
        if isinstance(node, And | Or):
            for child in node.children:
                walk(child)
        elif isinstance(node, Term):
            pairs.extend((node.field, v) for v in node.values)

    walk(request.query)
    pairs += [(f, v) for f, vs in request.selections.items() for v in vs]
    # failure_mode:x also asks failure_mode_parent:x: suggest for the field written only.
    implied = {
        (also, value)
        for field, value in pairs
        if (spec := schema.by_name.get(field)) is not None
        for also in spec.also
    }
    out: list[tuple[str, str, Node]] = []
    for field, value in dict.fromkeys(pairs):
        facet = schema.facet_field(field)
        spec = schema.by_name.get(field)
        if facet is None or (spec is not None and spec.values) or (field, value) in implied:
            continue
        fields = (field, *(spec.also if spec else ()))
        out.append((facet, value, or_of([Term(f, (value,)) for f in fields])))
    return out


def probe_request(request: SearchRequest, condition: Node) -> SearchRequest:
    """Does any visible case have this value? (The cheap question asked first: most empty
    answers combine values that each exist, and need no candidates.)"""
    return SearchRequest(visibility=request.visibility, query=condition, first=1, highlight=False)


def pool_request(request: SearchRequest, fields: list[str]) -> SearchRequest:
    return SearchRequest(
        visibility=request.visibility,
        query=MatchAll(),
        facets=tuple(dict.fromkeys(fields)),
        facet_size=POOL,
        first=1,
        highlight=False,
    )


def closest(value: str, buckets: list[Bucket]) -> list[str] | None:
    """The stored spellings closest to `value` (folded), best first; None when the value
    itself exists (nothing was misspelt: the other conditions excluded it)."""
    target = fold(value)
    scored = []
    for bucket in buckets:
        candidate = fold(bucket.value)
        if candidate == target:
            return None
        ratio = SequenceMatcher(None, target, candidate).ratio()
        if min(len(target), len(candidate)) >= 3 and (target in candidate or candidate in target):
            ratio = max(ratio, 0.8)  # `gpt` for `ChatGPT`: a part of the value
        if ratio >= CUTOFF:
            scored.append((-ratio, -bucket.count, bucket.value))
    return [v for _, _, v in sorted(scored)[:MAX_SUGGESTIONS]]


def suggestions(pairs: list[tuple[str, str]], facets: dict[str, list[Bucket]]) -> list[Suggestion]:
    out = []
    for field, value in pairs:
        found = closest(value, facets.get(field, []))
        if found:
            out.append(Suggestion(field=field, value=value, closest=found))
    return out
