"""The production backend: OpenSearch through opensearch-py's AsyncOpenSearch.

The service searches and writes through an alias (`settings.search_index`) that points at one
concrete index `<alias>-<timestamp>`; an index template gives every such index the mapping
(mapping.py), so a rebuild creates a fresh index and moves the alias in one atomic request.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch, JSONSerializer, helpers
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
)
from opensearchpy.exceptions import (
    ConnectionTimeout,
    NotFoundError,
    TransportError,
)

from services.search.backends.base import BackendUnavailable, Progress
from services.search.backends.opensearch import mapping
from services.search.backends.opensearch.compiler import Compiler
from services.search.documents import normalize
from services.search.fields import SCHEMA, DocumentSchema
from services.search.request import Hit, SearchRequest, SearchResult, Visibility

log = logging.getLogger("failcat.search.opensearch")


class _OrjsonSerializer(JSONSerializer):
    """The client's JSON through orjson: a search answer (hits, three facets) parsed by the
    standard library cost a few hundred microseconds of every search. Text still comes out
    as str (the bulk helper measures and joins its lines as text); what orjson cannot encode
    goes through the library's own `default`."""

    def dumps(self, data: Any) -> str:
        if isinstance(data, str | bytes):
            return data  # type: ignore[return-value]  # already encoded, as the parent does
        return orjson.dumps(data, default=self.default, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # raises the library's SerializationError


# What a search answer is read for (compiler.result): the rest (shards, timings, _index and
# _type of every hit) is left out by the node instead of being sent and parsed.
SEARCH_FILTER_PATH = ",".join(
    [
        "hits.total",
        "hits.hits._id",
        "hits.hits._score",
        "hits.hits.sort",
        "hits.hits.highlight",
        "aggregations",
    ]
)


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

    def __init__(
        self, url: str, alias: str, *, timeout: float = 30.0, schema: DocumentSchema = SCHEMA
    ) -> None:
        self.url = url
        self.alias = alias
        self.schema = schema
        self.compiler = Compiler(schema)
        self.mappings = mapping.mappings(schema)
        self.settings = mapping.settings(schema)
        self._outdated = False
        # No client-side retries: the indexer has its own backoff, and a search should fail
        # fast (503) rather than hang while the cluster is down.
        self.client = AsyncOpenSearch(
            hosts=[url],
            timeout=timeout,
            max_retries=0,
            retry_on_timeout=False,
            serializer=_OrjsonSerializer(),
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
                    "template": {"settings": self.settings, "mappings": self.mappings},
                },
            )
            if await self.client.indices.exists_alias(name=self.alias):
                # An index made for another field table stays as it is (searches keep
                # using it) until the indexer rebuilds it from the catalog.
                found = await self.client.indices.get_mapping(index=self.alias)
                want = self.mappings["_meta"]["failcat_schema"]
                self._outdated = any(
                    (m.get("mappings", {}).get("_meta") or {}).get("failcat_schema") != want
                    for m in found.values()
                )
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

    async def outdated(self) -> bool:
        return self._outdated

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.indices.exists_alias(name=self.alias))
        except TransportError:  # connection errors and timeouts included
            return False

    async def drop(self) -> None:
        """Delete the alias's indices and the template, then close."""
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
        await self.close()

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
                # revision is older than the stored one (409), so late replays are harmless;
                # an equal one is rebuilt from the catalog as it is now (a context event
                # recorded after the case re-queues it at the same revision).
                "version": int(d["revision"]),
                "version_type": "external_gte",
                "_source": self._source(d),
            }
            for d in docs
        ]

    def _source(self, doc: dict[str, Any]) -> dict[str, Any]:
        src = normalize(doc, self.schema)
        if self.schema.map is not None:
            pairs = src[self.schema.map.name]
            keys_field, pairs_field = mapping.map_fields(self.schema)
            src[keys_field] = sorted(pairs)
            src[pairs_field] = sorted(f"{k}={v}" for k, v in pairs.items())
        return src

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
                index=new, body={"index": {"refresh_interval": self.settings["refresh_interval"]}}
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
        self._outdated = False
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
        return self.compiler.result(req, await self.raw_search(self.compiler.search(req)))

    async def raw_search(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send a compiled body as it is (the benchmark times the engine alone with it)."""
        try:
            return await self.client.search(
                index=self.alias, body=body, filter_path=SEARCH_FILTER_PATH
            )
        except TransportError as exc:
            if not _transient(exc):
                raise
            raise _unavailable(exc) from exc

    async def similar(self, visibility: Visibility, case_id: str, first: int) -> list[Hit]:
        vis = visibility.opensearch()
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
                                        "fields": list(self.schema.text_fields),
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
