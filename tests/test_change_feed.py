"""Committed changes reach case-event subscribers: on Postgres those of every API process
(LISTEN/NOTIFY), on embedded SQLite those of the one process it serves."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import orjson

from services.gateway.app import create_app
from shared.changes import _payloads
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases


async def test_ingested_cases_reach_the_listening_process(
    backend, settings, app, client, token_for
):
    async with contextlib.AsyncExitStack() as stack:
        listener = app
        if backend == "real":
            # A second API process: its own engine, feed and bus on the same database.
            listener = create_app(settings)
            await stack.enter_async_context(listener.router.lifespan_context(listener))
        sub = await stack.enter_async_context(listener.state.case_events.subscribe())
        writer = auth_header(await token_for("cases:ingest"))
        resp = await client.post(
            "/catalog/v1/cases:bulk", json=unique(aiid_cases(3)), headers=writer
        )
        ids = {r["id"] for r in resp.json()["results"]}
        got: set[str] = set()
        while not ids <= got:
            got.add((await asyncio.wait_for(sub.queue.get(), 5)).case_id)


def test_notify_payloads_stay_under_the_limit_and_keep_every_id():
    ids = [f"01a22{secrets.token_hex(15)}" for _ in range(1000)]
    payloads = list(_payloads("ingested", ids))
    assert len(payloads) > 1 and all(len(p) < 8000 for p in payloads)
    assert [i for p in payloads for i in orjson.loads(p)["ids"]] == ids
