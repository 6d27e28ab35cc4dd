"""Writing the embedded index: upserts that keep the newest revision, and the rebuild."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiosqlite

from services.search.backends.base import Progress
from services.search.backends.embedded.layout import (
    COUNT_TABLE,
    FTS_TABLES,
    VISIBILITY_COLUMNS,
    Layout,
)
from services.search.documents import normalize, to_epoch_ms
from services.search.fields import fold


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Writer:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dates = set(layout.dates)

    def _row(self, doc: dict[str, Any]) -> tuple[Any, ...]:
        for name in self.layout.folded:
            doc[f"{name}_f"] = None if doc[name] is None else fold(doc[name])
        return tuple(
            to_epoch_ms(doc.get(c)) if c in self.dates else doc.get(c) for c in self.layout.columns
        )

    async def index(self, conn: aiosqlite.Connection, raw: list[dict[str, Any]]) -> int:
        layout = self.layout
        docs = [normalize(d, layout.schema) for d in raw]
        # Highest revision per id within the batch, then only those not older than the index
        # (an equal revision is the catalog's document rebuilt: see OpenSearch's external_gte).
        latest: dict[str, dict[str, Any]] = {}
        for d in docs:
            if d["id"] not in latest or d["revision"] > latest[d["id"]]["revision"]:
                latest[d["id"]] = d
        ids = list(latest)
        stored: dict[str, int] = {}
        for chunk in _chunks(ids, 500):
            rows = await conn.execute_fetchall(
                f"SELECT id, revision FROM doc WHERE id IN ({', '.join('?' for _ in chunk)})", chunk
            )
            stored.update({r[0]: r[1] for r in rows})
        fresh = [d for d in latest.values() if d["revision"] >= stored.get(d["id"], -1)]
        if not fresh:
            return 0
        # The counts lose what the replaced documents counted, and gain the new ones'.
        deltas = await self._counted(conn, [d["id"] for d in fresh if d["id"] in stored], -1)
        rows = [self._row(d) for d in fresh]
        await conn.executemany(layout.upsert, rows)
        for d, row in zip(fresh, rows, strict=True):
            values = dict(zip(layout.columns, row, strict=True))
            for key in layout.count_keys(values, {f: d[f] for f in layout.counted_lists}):
                deltas[key] += 1
        await self._apply(conn, deltas)
        pks: dict[str, int] = {}
        for chunk in _chunks([d["id"] for d in fresh], 500):
            rows = await conn.execute_fetchall(
                f"SELECT id, pk FROM doc WHERE id IN ({', '.join('?' for _ in chunk)})", chunk
            )
            pks.update({r[0]: r[1] for r in rows})
        await conn.executemany(
            layout.upsert_text, [(pks[d["id"]], *(d[c] for c in layout.text)) for d in fresh]
        )
        touched = [(pks[d["id"]],) for d in fresh if d["id"] in stored]
        if touched:
            await conn.executemany("DELETE FROM doc_kw WHERE pk = ?", touched)
            await conn.executemany("DELETE FROM doc_env WHERE pk = ?", touched)
        vis = ", ".join(VISIBILITY_COLUMNS)
        await conn.executemany(
            f"INSERT INTO doc_kw (field, folded, value, pk, {vis}) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (f, fold(v), v, pks[d["id"]], *(d.get(c) for c in VISIBILITY_COLUMNS))
                for d in fresh
                for f in layout.lists
                for v in d[f]
            ],
        )
        if layout.map:
            await conn.executemany(
                "INSERT INTO doc_env (fkey, fvalue, key, value, pk) VALUES (?, ?, ?, ?, ?)",
                [
                    (fold(k), fold(v), k, v, pks[d["id"]])
                    for d in fresh
                    for k, v in d[layout.map].items()
                ],
            )
        return len(fresh)

    async def delete(self, conn: aiosqlite.Connection, ids: list[str]) -> None:
        deltas = await self._counted(conn, ids, -1)
        await conn.executemany("DELETE FROM doc WHERE id = ?", [(i,) for i in ids])
        await self._apply(conn, deltas)

    async def _counted(
        self, conn: aiosqlite.Connection, ids: list[str], sign: int
    ) -> Counter[tuple[Any, ...]]:
        """What the stored documents `ids` count in doc_count, times `sign`."""
        layout = self.layout
        deltas: Counter[tuple[Any, ...]] = Counter()
        columns = ("pk", *layout.columns)
        lists = layout.counted_lists
        for chunk in _chunks(ids, 500):
            marks = ", ".join("?" for _ in chunk)
            rows = await conn.execute_fetchall(
                f"SELECT {', '.join(columns)} FROM doc WHERE id IN ({marks})", chunk
            )
            listed: dict[int, dict[str, list[str]]] = {}
            if lists and rows:
                kw = await conn.execute_fetchall(
                    f"SELECT pk, field, value FROM doc_kw WHERE pk IN "
                    f"({', '.join('?' for _ in rows)}) AND field IN "
                    f"({', '.join('?' for _ in lists)})",
                    [r[0] for r in rows] + list(lists),
                )
                for pk, field, value in kw:
                    listed.setdefault(pk, {}).setdefault(field, []).append(value)
            for row in rows:
                values = dict(zip(columns, row, strict=True))
                for key in layout.count_keys(values, listed.get(row[0], {})):
                    deltas[key] += sign
        return deltas

    @staticmethod
    async def _apply(conn: aiosqlite.Connection, deltas: Counter[tuple[Any, ...]]) -> None:
        """One upsert per key the batch changed (a batch of documents shares most)."""
        await conn.executemany(
            f"INSERT INTO {COUNT_TABLE} (key, value, value2, sensitivity, team, n) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
            [(*key, n) for key, n in deltas.items() if n],
        )

    async def rebuild(
        self,
        conn: aiosqlite.Connection,
        batches: AsyncIterator[list[dict[str, Any]]],
        progress: Progress | None,
    ) -> int:
        """Inside one write transaction: searches keep reading the last committed state (WAL
        snapshots) until the new contents commit all at once, which is the swap."""
        done = 0
        # Clear the FTS index in one step; without the delete triggers, so that FTS5 is not
        # asked to remove rows one by one (or rows it no longer holds).
        for fts in FTS_TABLES:
            await conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')")
        for trigger in ("doc_ad", "doc_text_ad"):
            await conn.execute(f"DROP TRIGGER {trigger}")
        # doc_count among them: the counts start again from nothing with the documents.
        for table in self.layout.tables:
            await conn.execute(f"DELETE FROM {table}")
        await conn.execute(self.layout.delete_trigger)
        await conn.execute(self.layout.text_delete_trigger)
        async for batch in batches:
            await self.index(conn, batch)
            done += len(batch)
            if progress:
                progress(done, None)
        for fts in FTS_TABLES:
            await conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")
        return done
