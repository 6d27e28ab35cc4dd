"""The query tree and a search request compiled to an OpenSearch request body, and the
answer parsed back. The benchmark replays compile_search's body to time the engine alone."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from services.search.backends.opensearch.mapping import map_fields
from services.search.documents import iso_utc
from services.search.fields import DocumentSchema, Kind, SortKey, fold
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
    positive_text,
)
from services.search.request import (
    TOTAL_EXACT_UP_TO,
    Bucket,
    HeatmapCell,
    Hit,
    SearchRequest,
    SearchResult,
)

_INTERVALS = {"hour": "1h", "day": "1d", "week": "1w", "month": "1M"}


def _regex_escape(text: str) -> str:
    """Escape a literal for Lucene's regular expression syntax (terms `include`)."""
    return re.sub(r'([.?+*|{}\[\]()"\\#@&<>~])', r"\\\1", text)


def _plain(word: str) -> str:
    """A prefix as the `plain` analyzer indexes words: lower-case, accents removed."""
    decomposed = unicodedata.normalize("NFKD", fold(word))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _no_score(clause: dict[str, Any]) -> dict[str, Any]:
    # Exact conditions must not change relevance: only text scores, as in the embedded bm25.
    return {"constant_score": {"filter": clause, "boost": 0.0}}


class Compiler:
    def __init__(self, schema: DocumentSchema) -> None:
        self.schema = schema
        self.text = schema.text_fields
        self.boosted = [f.name if f.weight == 1 else f"{f.name}^{f.weight:g}" for f in schema.text]
        self.dates = {f.name for f in schema.of(Kind.DATE)}
        self.folded = {f.name for f in schema.fields if f.folded}
        self.map_prefix = f"{schema.map_prefix}." if schema.map else None
        self.keys_field, self.pairs_field = map_fields(schema) if schema.map else ("", "")
        self.sorts = {name: [self._sort(k) for k in keys] for name, keys in schema.sorts.items()}

    @staticmethod
    def _sort(key: SortKey) -> dict[str, Any]:
        order = "desc" if key.descending else "asc"
        if key.missing is not None:
            return {key.field: {"order": order, "missing": key.missing}}
        return {key.field: order}

    def _map_key(self, field: str) -> str | None:
        if self.map_prefix and field.startswith(self.map_prefix):
            return field[len(self.map_prefix) :]
        return None

    # ---- the query ----------------------------------------------------------------------

    def query(self, node: Node) -> dict[str, Any]:
        if isinstance(node, MatchAll):
            return {"match_all": {}}
        if isinstance(node, Text) and node.prefix:
            # Not scored, as in the embedded index (a prefix is no evidence of relevance).
            word = _plain(node.value)
            fields = [node.field] if node.field else self.text
            clauses = [{"prefix": {f"{f}.plain": word}} for f in fields]
            return _no_score({"bool": {"should": clauses, "minimum_should_match": 1}})
        if isinstance(node, Text):
            if node.field:
                return {"match_phrase": {node.field: {"query": node.value}}}
            # type phrase: a word that analyses into several tokens ("eu-west-1") must match
            # them adjacently, as FTS5 does.
            return {"multi_match": {"query": node.value, "type": "phrase", "fields": self.boosted}}
        if isinstance(node, And):
            return {"bool": {"must": [self.query(c) for c in node.children]}}
        if isinstance(node, Or):
            return {
                "bool": {
                    "should": [self.query(c) for c in node.children],
                    "minimum_should_match": 1,
                }
            }
        if isinstance(node, Not):
            if isinstance(node.child, MatchAll):
                return {"match_none": {}}
            return {"bool": {"must_not": [self.query(node.child)]}}
        if isinstance(node, Term):
            return _no_score(self.term(node.field, node.values))
        if isinstance(node, Range):
            bounds = {
                k: getattr(node, k)
                for k in ("gte", "gt", "lte", "lt")
                if getattr(node, k) is not None
            }
            if node.field in self.dates:
                bounds["format"] = "epoch_millis"
            return _no_score({"range": {node.field: bounds}})
        if isinstance(node, Exists):
            key = self._map_key(node.field)
            if key is not None:
                return _no_score({"term": {f"{self.keys_field}.folded": fold(key)}})
            return _no_score({"exists": {"field": node.field}})
        if isinstance(node, Prefix):
            key = self._map_key(node.field)
            if key is not None:
                clause = {"prefix": {f"{self.pairs_field}.folded": f"{fold(key)}={node.value}"}}
            else:
                clause = {"prefix": {self._match_field(node.field): node.value}}
            return _no_score(clause)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _match_field(self, field: str) -> str:
        """The field a term compares with: the folded sub-field of a case-forgiving one."""
        return f"{field}.folded" if field in self.folded else field

    def term(self, field: str, values: tuple[str, ...]) -> dict[str, Any]:
        """`values` are what the parser made them: folded, or a closed set's spelling."""
        key = self._map_key(field)
        if key is not None:
            pairs = [f"{fold(key)}={v}" for v in values]
            return {"terms": {f"{self.pairs_field}.folded": pairs}}
        return {"terms": {self._match_field(field): list(values)}}

    # ---- aggregations -------------------------------------------------------------------

    def _terms_agg(self, field: str, size: int) -> dict[str, Any]:
        order = [{"_count": "desc"}, {"_key": "asc"}]
        if self.schema.map and field == self.schema.map_prefix:
            return {"terms": {"field": self.keys_field, "size": size, "order": order}}
        key = self._map_key(field)
        if key is not None:
            return {
                "terms": {
                    "field": self.pairs_field,
                    "size": size,
                    "order": order,
                    "include": _regex_escape(key + "=") + ".*",
                }
            }
        return {
            "terms": {
                "field": field,
                "size": size,
                "order": order,
                "shard_size": max(size * 5, 100),
            }
        }

    def _bucket_value(self, field: str, key: Any) -> str:
        if self._map_key(field) is not None:
            return str(key).split("=", 1)[1]
        return str(key)

    # ---- the request --------------------------------------------------------------------

    def search(self, req: SearchRequest) -> dict[str, Any]:
        """The request body for `req`."""

        def selection_filter(skip: str | None = None) -> dict[str, Any]:
            clauses = [self.term(f, vs) for f, vs in req.selections.items() if f != skip]
            return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}

        body: dict[str, Any] = {
            "size": req.first + 1,
            "track_total_hits": TOTAL_EXACT_UP_TO,
            "_source": False,
            # The caller's visibility sits in the query's bool.filter, so hits, counts and
            # every aggregation below only ever see documents the caller may see.
            "query": {
                "bool": {
                    "must": [self.query(req.query)],
                    "filter": req.visibility.opensearch(),
                }
            },
            "sort": self.sorts[req.sort],
        }
        if req.selections:
            # Facet selections (never visibility) narrow hits and totals but not the
            # aggregations, which is what multi-select facets need; each facet agg below
            # re-applies the other fields' selections itself.
            body["post_filter"] = selection_filter()
        aggs: dict[str, Any] = {}
        for field in req.facets:
            aggs[f"facet:{field}"] = {
                "filter": selection_filter(skip=field),
                "aggs": {"values": self._terms_agg(field, req.facet_size)},
            }
        if req.histogram:
            aggs["histogram"] = {
                "filter": selection_filter(),
                "aggs": {
                    "h": {
                        "date_histogram": {
                            "field": "occurred_at",
                            "calendar_interval": _INTERVALS[req.histogram],
                            "min_doc_count": 1,
                        }
                    }
                },
            }
        if req.heatmap:
            hm = req.heatmap
            inner = {"y": self._terms_agg(hm.y, hm.size)}
            aggs["heatmap"] = {
                "filter": selection_filter(),
                "aggs": {"x": {**self._terms_agg(hm.x, hm.size), "aggs": inner}},
            }
        if aggs:
            body["aggs"] = aggs
        if req.after is not None:
            body["search_after"] = list(req.after)
        if req.highlight and positive_text(req.query):
            body["highlight"] = {
                "fields": {name: {} for name in self.text},
                "pre_tags": ["<em>"],
                "post_tags": ["</em>"],
                "encoder": "html",
                "fragment_size": 160,
                "number_of_fragments": 1,
                "require_field_match": True,
            }
        return body

    def result(self, req: SearchRequest, resp: dict[str, Any]) -> SearchResult:
        raw_hits = resp["hits"].get("hits", [])  # filter_path leaves out an empty list
        hits = [
            Hit(
                id=h["_id"],
                score=h.get("_score") if req.sort == "relevance" else None,
                highlights={k: v for k, v in (h.get("highlight") or {}).items()},
                sort_values=tuple(h.get("sort", ())),
            )
            for h in raw_hits[: req.first]
        ]
        total = resp["hits"]["total"]
        aggs = resp.get("aggregations", {})
        facets = {
            field: [
                Bucket(self._bucket_value(field, b["key"]), b["doc_count"])
                for b in aggs[f"facet:{field}"]["values"]["buckets"]
            ]
            for field in req.facets
        }
        histogram = [
            Bucket(iso_utc(b["key"]), b["doc_count"])
            for b in aggs.get("histogram", {}).get("h", {}).get("buckets", [])
        ]
        heatmap = []
        if req.heatmap:
            for bx in aggs["heatmap"]["x"]["buckets"]:
                for by in bx["y"]["buckets"]:
                    heatmap.append(
                        HeatmapCell(
                            self._bucket_value(req.heatmap.x, bx["key"]),
                            self._bucket_value(req.heatmap.y, by["key"]),
                            by["doc_count"],
                        )
                    )
        return SearchResult(
            hits=hits,
            total=total["value"],
            total_is_lower_bound=total["relation"] == "gte",
            facets=facets,
            histogram=histogram,
            heatmap=heatmap,
            has_more=len(raw_hits) > req.first,
        )
