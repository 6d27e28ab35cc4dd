"""One GraphQL request shares one session among resolvers that run concurrently; SQLAlchemy
does not allow two operations on a session at once, so they take turns (SerializedSession).

The probe counts statements in flight on one connection (between the engine's before- and
after-cursor events): without turns, concurrent resolvers put several there at once; with
them, never more than one, and every answer is still right."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.context import SerializedSession
from tests.gateway.helpers import data, gql, ingest_corpus


class InFlight:
    """The most statements ever in flight at once on one connection."""

    def __init__(self) -> None:
        self.now: dict[int, int] = defaultdict(int)
        self.most = 0

    def before(self, conn: Any, *_: Any) -> None:
        self.now[id(conn.connection)] += 1
        self.most = max(self.most, self.now[id(conn.connection)])

    def after(self, conn: Any, *_: Any) -> None:
        self.now[id(conn.connection)] -= 1


@contextmanager
def probe(engine: Any) -> Iterator[InFlight]:
    seen = InFlight()
    event.listen(engine.sync_engine, "before_cursor_execute", seen.before)
    event.listen(engine.sync_engine, "after_cursor_execute", seen.after)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen.before)
        event.remove(engine.sync_engine, "after_cursor_execute", seen.after)


async def gathered(session: AsyncSession, n: int) -> list[int]:
    async def one(i: int) -> int:
        # scalar() calls the session's own execute(): the turn is re-entrant for its holder.
        return await session.scalar(text(f"SELECT {i}"))

    return await asyncio.gather(*(one(i) for i in range(n)))


async def test_a_shared_session_takes_turns(app):
    db = app.state.db
    # The control: a plain AsyncSession shared by concurrent tasks has statements overlap.
    async with db.sessionmaker() as plain, plain.begin():
        await plain.connection()
        with probe(db.engine) as seen:
            assert await gathered(plain, 8) == list(range(8))
        assert seen.most > 1, "the probe must see overlap where nothing serializes"
    async with SerializedSession(**db.sessionmaker.kw) as session, session.begin():
        await session.connection()
        with probe(db.engine) as seen:
            assert await gathered(session, 8) == list(range(8))
        assert seen.most == 1


async def test_concurrent_resolvers_of_one_request(client, admin_token, app):
    ids = await ingest_corpus(client, admin_token, 4)
    fields = []
    for i, case_id in enumerate(ids):
        fields.append(
            f'c{i}: case(id: "{case_id}") {{ id title model {{ name }} links {{ url }} }}'
        )
        fields.append(f"p{i}: cases(first: 2) {{ nodes {{ id modelVersion {{ version }} }} }}")
    fields += ["m: models { name }", "t: taxonomy { code }", "r: severityRubric { grade }"]
    with probe(app.state.db.engine) as seen:
        body = await gql(client, admin_token, "{\n" + "\n".join(fields) + "\n}")
    result = data(body)
    assert [result[f"c{i}"]["id"] for i in range(len(ids))] == ids
    assert all(len(result[f"p{i}"]["nodes"]) == 2 for i in range(len(ids)))
    assert result["m"] and result["t"] and result["r"]
    assert seen.most == 1
