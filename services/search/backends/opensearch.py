"""The production backend: OpenSearch through opensearch-py's AsyncOpenSearch.

The service searches and writes through an alias (`settings.search_index`) that points at one
concrete index `<alias>-<timestamp>`; an index template gives every such index the mapping,
so a rebuild creates a fresh index and moves the alias in one atomic request.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from opensearchpy import AsyncOpenSearch, helpers
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
)
from opensearchpy.exceptions import (
    ConnectionTimeout,
    NotFoundError,
    TransportError,
)

from services.search.backends.base import BackendUnavailable, Progress
from services.search.documents import KEYWORDS, iso_utc, normalize
from services.search.fields import TEXT_FIELDS
from services.search.query import (
    And,
    Exists,
    MatchAll,
    Node,
    Not,
    Or,
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
    Visibility,
)

log = logging.getLogger("failcat.search.opensearch")

BOOSTED_TEXT = ["title^3", *TEXT_FIELDS[1:]]
_KEYWORD = {"type": "keyword"}
_TEXT = {
    "type": "text",
    "analyzer": "english",
    # Offsets in the postings let the unified highlighter skip re-analysing the text.
    "index_options": "offsets",
    "fields": {"exact": {"type": "keyword", "ignore_above": 1024}},
}

MAPPINGS: dict[str, Any] = {
    # Unknown fields are kept in _source but not indexed: a catalog that adds a field
    # cannot break indexing or blow up the mapping.
    "dynamic": False,
    "properties": {
        "id": _KEYWORD,
        "revision": {"type": "long"},
        **{name: _TEXT for name in TEXT_FIELDS},
        **{
            name: _KEYWORD
            for name in (
                *(k for k in KEYWORDS if k != "id"),
                "tags",
                "env_keys",
                "env_pairs",
            )
        },
        "severity_rank": {"type": "byte"},
        # The map itself is only stored: its keys are open-ended, so it is indexed as
        # env_keys ("region") and env_pairs ("region=eu-west-1") instead of one field per key.
        "environment": {"type": "object", "enabled": False},
        "occurred_at": {"type": "date"},
        "received_at": {"type": "date"},
        # double, not float: `confidence:<0.3` must compare exactly as SQLite's REAL does.
        "confidence": {"type": "double"},
        "latency_ms": {"type": "double"},
    },
}

INDEX_SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    # One replica where there is a second node to hold it; a single node stays green.
    "auto_expand_replicas": "0-1",
    "refresh_interval": "1s",
}

_INTERVALS = {"hour": "1h", "day": "1d", "week": "1w", "month": "1M"}


def _regex_escape(text: str) -> str:
    """Escape a literal for Lucene's regular expression syntax (terms `include`)."""
    return re.sub(r'([.?+*|{}\[\]()"\\#@&<>~])', r"\\\1", text)


def _no_score(clause: dict[str, Any]) -> dict[str, Any]:
    # Exact conditions must not change relevance: only text scores, as in the embedded bm25.
    return {"constant_score": {"filter": clause, "boost": 0.0}}


def compile_query(node: Node) -> dict[str, Any]:
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, Text):
        if node.field:
            return {"match_phrase": {node.field: {"query": node.value}}}
        # type phrase: a word that analyses into several tokens ("eu-west-1") must match
        # them adjacently, as FTS5 does.
        return {"multi_match": {"query": node.value, "type": "phrase", "fields": BOOSTED_TEXT}}
    if isinstance(node, And):
        return {"bool": {"must": [compile_query(c) for c in node.children]}}
    if isinstance(node, Or):
        return {
            "bool": {"should": [compile_query(c) for c in node.children], "minimum_should_match": 1}
        }
    if isinstance(node, Not):
        if isinstance(node.child, MatchAll):
            return {"match_none": {}}
        return {"bool": {"must_not": [compile_query(node.child)]}}
    if isinstance(node, Term):
        return _no_score(compile_term(node.field, node.values))
    if isinstance(node, Range):
        bounds = {
            k: getattr(node, k) for k in ("gte", "gt", "lte", "lt") if getattr(node, k) is not None
        }
        if node.field in ("occurred_at", "received_at"):
            bounds["format"] = "epoch_millis"
        return _no_score({"range": {node.field: bounds}})
    if isinstance(node, Exists):
        if node.field.startswith("env."):
            return _no_score({"term": {"env_keys": node.field[4:]}})
        return _no_score({"exists": {"field": node.field}})
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def compile_term(field: str, values: tuple[str, ...]) -> dict[str, Any]:
    if field.startswith("env."):
        key = field[4:]
        return {"terms": {"env_pairs": [f"{key}={v}" for v in values]}}
    return {"terms": {field: list(values)}}


def visibility_filter(vis: Visibility) -> list[dict[str, Any]]:
    return vis.opensearch()


def _terms_agg(field: str, size: int) -> dict[str, Any]:
    order = [{"_count": "desc"}, {"_key": "asc"}]
    if field == "env":
        return {"terms": {"field": "env_keys", "size": size, "order": order}}
    if field.startswith("env."):
        return {
            "terms": {
                "field": "env_pairs",
                "size": size,
                "order": order,
                "include": _regex_escape(field[4:] + "=") + ".*",
            }
        }
    return {
        "terms": {"field": field, "size": size, "order": order, "shard_size": max(size * 5, 100)}
    }


def _bucket_value(field: str, key: Any) -> str:
    if field.startswith("env."):
        return str(key).split("=", 1)[1]
    return str(key)


SORTS: dict[str, list[Any]] = {
    "relevance": [{"_score": "desc"}, {"id": "asc"}],
    "occurred_at": [{"occurred_at": "asc"}, {"id": "asc"}],
    "-occurred_at": [{"occurred_at": "desc"}, {"id": "asc"}],
    "severity": [
        {"severity_rank": {"order": "asc", "missing": 99}},
        {"occurred_at": "desc"},
        {"id": "asc"},
    ],
    "-severity": [
        {"severity_rank": {"order": "desc", "missing": -1}},
        {"occurred_at": "desc"},
        {"id": "asc"},
    ],
}


def compile_search(req: SearchRequest) -> dict[str, Any]:
    """The request body for `req`: what the service sends, and what the benchmark replays."""

    def selection_filter(skip: str | None = None) -> dict[str, Any]:
        clauses = [compile_term(f, vs) for f, vs in req.selections.items() if f != skip]
        return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}

    body: dict[str, Any] = {
        "size": req.first + 1,
        "track_total_hits": TOTAL_EXACT_UP_TO,
        "_source": False,
        # The caller's visibility sits in the query's bool.filter, so hits, counts and every
        # aggregation below only ever see documents the caller may see.
        "query": {
            "bool": {
                "must": [compile_query(req.query)],
                "filter": visibility_filter(req.visibility),
            }
        },
        "sort": SORTS[req.sort],
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
            "aggs": {"values": _terms_agg(field, req.facet_size)},
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
        inner = {"y": _terms_agg(hm.y, hm.size)}
        aggs["heatmap"] = {
            "filter": selection_filter(),
            "aggs": {"x": {**_terms_agg(hm.x, hm.size), "aggs": inner}},
        }
    if aggs:
        body["aggs"] = aggs
    if req.after is not None:
        body["search_after"] = list(req.after)
    if req.highlight and positive_text(req.query):
        body["highlight"] = {
            "fields": {name: {} for name in TEXT_FIELDS},
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            "encoder": "html",
            "fragment_size": 160,
            "number_of_fragments": 1,
            "require_field_match": True,
        }
    return body


def parse_response(req: SearchRequest, resp: dict[str, Any]) -> SearchResult:
    raw_hits = resp["hits"]["hits"]
    has_more = len(raw_hits) > req.first
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
            Bucket(_bucket_value(field, b["key"]), b["doc_count"])
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
                        _bucket_value(req.heatmap.x, bx["key"]),
                        _bucket_value(req.heatmap.y, by["key"]),
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
        next_cursor="more" if has_more else None,
    )


def to_source(doc: dict[str, Any]) -> dict[str, Any]:
    src = normalize(doc)
    env = src["environment"]
    src["env_keys"] = sorted(env)
    src["env_pairs"] = sorted(f"{k}={v}" for k, v in env.items())
    return src


def _unavailable(exc: Exception) -> BackendUnavailable:
    return BackendUnavailable(f"OpenSearch unavailable: {exc}")


_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


def _transient(exc: TransportError) -> bool:
    """Unreachable, or reachable but not serving yet: a node restarting answers 503
    (search_phase_execution_exception) until its shards are assigned again."""
    return isinstance(exc, OSConnectionError | ConnectionTimeout) or (
        exc.status_code in _TRANSIENT_STATUS
    )


class OpenSearchBackend:
    name = "opensearch"

    def __init__(self, url: str, alias: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self.alias = alias
        # No client-side retries: the indexer has its own backoff, and a search should fail
        # fast (503) rather than hang while the cluster is down.
        self.client = AsyncOpenSearch(
            hosts=[url], timeout=timeout, max_retries=0, retry_on_timeout=False
        )

    @property
    def template_name(self) -> str:
        return f"{self.alias}-template"

    def _new_index_name(self) -> str:
        return f"{self.alias}-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"

    async def ensure_ready(self) -> None:
        try:
            await self.client.indices.put_index_template(
                name=self.template_name,
                body={
                    "index_patterns": [f"{self.alias}-*"],
                    "priority": 100,
                    "template": {"settings": INDEX_SETTINGS, "mappings": MAPPINGS},
                },
            )
            if await self.client.indices.exists_alias(name=self.alias):
                # Existing indices keep their mapping; new fields are added in place.
                await self.client.indices.put_mapping(index=self.alias, body=MAPPINGS)
                return
            if await self.client.indices.exists(index=self.alias):
                raise RuntimeError(
                    f"OpenSearch has an index named {self.alias!r}, where failcat expects an "
                    f"alias: run `failcat reindex` after deleting it, or pick another "
                    f"FAILCAT_SEARCH_INDEX"
                )
            await self.client.indices.create(
                index=self._new_index_name(), body={"aliases": {self.alias: {}}}
            )
        except (OSConnectionError, ConnectionTimeout) as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.indices.exists_alias(name=self.alias))
        except Exception:
            return False

    async def drop(self) -> None:
        """Delete the alias's indices and the template (tests and benchmarks)."""
        try:
            indices = await self.client.indices.get_alias(name=self.alias)
            for name in indices:
                await self.client.indices.delete(index=name)
        except NotFoundError:
            pass
        for name in await self._orphans():
            await self.client.indices.delete(index=name)
        with contextlib.suppress(NotFoundError):
            await self.client.indices.delete_index_template(name=self.template_name)

    async def _orphans(self) -> list[str]:
        try:
            found = await self.client.indices.get(index=f"{self.alias}-*")
        except NotFoundError:
            return []
        return list(found)

    # ---- writes -------------------------------------------------------------------------

    async def _bulk(self, actions: list[dict[str, Any]], require_alias: bool = True) -> int:
        try:
            # require_alias: if the alias is gone (a wiped cluster), fail instead of letting
            # OpenSearch auto-create an index of that name with a guessed mapping.
            ok, errors = await helpers.async_bulk(
                self.client,
                actions,
                raise_on_error=False,
                raise_on_exception=True,
                chunk_size=1000,
                max_chunk_bytes=20 * 1024 * 1024,
                require_alias="true" if require_alias else "false",
            )
        except (OSConnectionError, ConnectionTimeout) as exc:
            raise _unavailable(exc) from exc
        except TransportError as exc:
            raise _unavailable(exc) from exc
        retry = []
        for err in errors:
            op, info = next(iter(err.items()))
            status = info.get("status", 0)
            if status == 409 or (
                op == "delete" and status == 404 and "index_not_found" not in str(info.get("error"))
            ):
                continue  # a newer revision is already there, or it is already gone
            if status == 429 or status >= 500 or "index_not_found" in str(info.get("error")):
                retry.append(info)
            else:
                # A document the mapping rejects would block the outbox forever if retried;
                # it is logged, and `failcat search verify` reports it as missing.
                log.error(
                    "search document rejected",
                    extra={"id": info.get("_id"), "error": info.get("error")},
                )
        if retry:
            raise BackendUnavailable(
                f"OpenSearch refused {len(retry)} documents for now: {retry[0].get('error')}"
            )
        return ok

    def _index_actions(self, docs: list[dict[str, Any]], index: str) -> list[dict[str, Any]]:
        return [
            {
                "_op_type": "index",
                "_index": index,
                "_id": str(d["id"]),
                # The revision as the external version: OpenSearch refuses a write whose
                # revision is not newer than the stored one (409), so replays are harmless.
                "version": int(d["revision"]),
                "version_type": "external",
                "_source": to_source(d),
            }
            for d in docs
        ]

    async def index(self, docs: list[dict[str, Any]]) -> int:
        if not docs:
            return 0
        return await self._bulk(self._index_actions(docs, self.alias))

    async def delete(self, ids: list[str]) -> None:
        if ids:
            await self._bulk([{"_op_type": "delete", "_index": self.alias, "_id": i} for i in ids])

    async def rebuild(
        self, batches: AsyncIterator[list[dict[str, Any]]], progress: Progress | None = None
    ) -> int:
        new = self._new_index_name()
        try:
            # No refreshes while loading (nothing searches the new index yet).
            await self.client.indices.create(
                index=new, body={"settings": {"refresh_interval": "-1"}}
            )
            done = 0
            async for batch in batches:
                await self._bulk(self._index_actions(batch, new), require_alias=False)
                done += len(batch)
                if progress:
                    progress(done, None)
            await self.client.indices.put_settings(
                index=new, body={"index": {"refresh_interval": INDEX_SETTINGS["refresh_interval"]}}
            )
            await self.client.indices.refresh(index=new)
            try:
                old = list(await self.client.indices.get_alias(name=self.alias))
            except NotFoundError:
                old = []
            # One request: the alias moves from the old index to the new one atomically.
            actions: list[dict[str, Any]] = [
                {"remove": {"index": o, "alias": self.alias}} for o in old
            ]
            actions.append({"add": {"index": new, "alias": self.alias}})
            await self.client.indices.update_aliases(body={"actions": actions})
        except BaseException:
            await self.client.indices.delete(index=new, ignore_unavailable=True)
            raise
        for o in old:
            await self.client.indices.delete(index=o, ignore_unavailable=True)
        return done

    async def refresh(self) -> None:
        await self.client.indices.refresh(index=self.alias)

    # ---- reads --------------------------------------------------------------------------

    async def revisions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            async for hit in helpers.async_scan(
                self.client,
                index=self.alias,
                size=5000,
                query={"query": {"match_all": {}}, "_source": ["revision"]},
            ):
                out[hit["_id"]] = int(hit["_source"]["revision"])
        except TransportError as exc:
            if not _transient(exc):
                raise
            raise _unavailable(exc) from exc
        return out

    async def search(self, req: SearchRequest) -> SearchResult:
        return parse_response(req, await self.raw_search(compile_search(req)))

    async def raw_search(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.client.search(index=self.alias, body=body)
        except TransportError as exc:
            if not _transient(exc):
                raise
            raise _unavailable(exc) from exc

    async def similar(self, visibility: Visibility, case_id: str, first: int) -> list[Hit]:
        vis = visibility_filter(visibility)
        try:
            # The source case must itself be visible, or its text would steer the results.
            found = await self.client.search(
                index=self.alias,
                body={
                    "size": 1,
                    "_source": False,
                    "query": {"bool": {"filter": [{"ids": {"values": [case_id]}}, *vis]}},
                },
            )
            if not found["hits"]["hits"]:
                return []
            concrete = found["hits"]["hits"][0]["_index"]
            resp = await self.client.search(
                index=self.alias,
                body={
                    "size": first,
                    "_source": False,
                    "query": {
                        "bool": {
                            "must": [
                                {
                                    "more_like_this": {
                                        "fields": list(TEXT_FIELDS),
                                        "like": [{"_index": concrete, "_id": case_id}],
                                        "min_term_freq": 1,
                                        "min_doc_freq": 2,
                                        "max_query_terms": 25,
                                    }
                                }
                            ],
                            "filter": vis,
                            "must_not": [{"ids": {"values": [case_id]}}],
                        }
                    },
                    "sort": [{"_score": "desc"}, {"id": "asc"}],
                },
            )
        except TransportError as exc:
            if not _transient(exc):
                raise
            raise _unavailable(exc) from exc
        return [Hit(id=h["_id"], score=h["_score"], highlights={}) for h in resp["hits"]["hits"]]
