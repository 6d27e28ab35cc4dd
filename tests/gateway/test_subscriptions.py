"""Subscription.caseEvents over graphql-transport-ws, with a real websocket client against the
app served by uvicorn on this test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from datetime import timedelta

import pytest
import uvicorn
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.audit.models import AuditEntry
from services.gateway import limits as L
from tests.gateway.helpers import data, gql, ingest_corpus

EVENTS = """subscription($f: CaseEventFilterInput) {
  caseEvents(filter: $f) { kind lagged case { id title team model { name } } }
}"""


@pytest.fixture(scope="module")
async def ws_url(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The app's lifespan already runs (session fixture): uvicorn only serves it.
    server = uvicorn.Server(uvicorn.Config(app, port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{port}/graphql"
    server.should_exit = True
    await task


@contextlib.asynccontextmanager
async def subscribed(url, token, variables, sub_id="1"):
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": sub_id,
                    "type": "subscribe",
                    "payload": {"query": EVENTS, "variables": variables},
                }
            )
        )
        await asyncio.sleep(0.1)  # the subscription is registered on the bus
        yield ws


async def next_payload(ws):
    message = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
    assert message["type"] == "next", message
    return message["payload"]


async def event_entries(app, case_id):
    """The audit entries of `caseEvents` deliveries of the case, in order."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.action == "case.event", AuditEntry.target == f"case:{case_id}")
        .order_by(AuditEntry.seq)
    )
    async with app.state.db.sessionmaker() as s:
        return list((await s.execute(query)).scalars())


async def test_ingested_and_changed_cases_reach_subscribers_who_may_see_them(
    ws_url, app, client, token_for
):
    model = f"live-{secrets.token_hex(3)}"
    watcher = await token_for("cases:read", team="payments-ml")
    writer = await token_for("cases:read cases:write cases:ingest")
    async with subscribed(ws_url, watcher, {"f": {"model": model}}) as ws:
        other_team = await ingest_corpus(
            client, writer, 1, team="search-ml", model={"name": model, "version": "1"}
        )
        [mine] = await ingest_corpus(
            client, writer, 1, team="payments-ml", model={"name": model, "version": "1"}
        )
        got = await next_payload(ws)
        event = got["data"]["caseEvents"]
        assert event["kind"] == "INGESTED" and event["case"]["id"] == mine
        assert event["case"]["model"] == {"name": model} and event["lagged"] == 0
        assert other_team[0] != mine  # the other team's case was not delivered first
        # The delivery is a read of the case: its entry is stored before the event arrives.
        assert [e.details for e in await event_entries(app, mine)] == [{"kind": "ingested"}]

        update = """mutation($id: ID!) { updateCase(id: $id, patch: {title: "retitled"},
                    expectedRevision: 1) { revision } }"""
        data(await gql(client, writer, update, {"id": mine}))
        changed = (await next_payload(ws))["data"]["caseEvents"]
        assert changed["kind"] == "CHANGED" and changed["case"]["title"] == "retitled"
        delivered = await event_entries(app, mine)
        assert [e.details for e in delivered] == [{"kind": "ingested"}, {"kind": "changed"}]
        assert len({e.actor_subject for e in delivered}) == 1 and delivered[0].actor_subject
        # Nothing delivered, nothing recorded: the other team's case was not read.
        assert await event_entries(app, other_team[0]) == []


async def test_a_failed_mutation_announces_nothing(ws_url, client, token_for):
    model = f"rolled-back-{secrets.token_hex(3)}"
    reader = await token_for("cases:read")
    writer = await token_for("cases:read cases:write cases:ingest")
    async with subscribed(ws_url, reader, {"f": {"kinds": ["CHANGED"]}}) as ws:
        [case_id] = await ingest_corpus(client, writer, 1, model={"name": model, "version": "1"})
        stale = """mutation($id: ID!) { updateCase(id: $id, patch: {title: "x"},
                   expectedRevision: 7) { revision } }"""
        assert "errors" in await gql(client, writer, stale, {"id": case_id})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)


async def test_unauthenticated_connection_is_refused(ws_url):
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4403


async def test_subscriptions_per_connection_are_capped(ws_url, token_for):
    token = await token_for("cases:read")
    async with subscribed(ws_url, token, {}) as ws:
        for i in range(2, L.MAX_SUBSCRIPTIONS_PER_CONNECTION + 2):
            await ws.send(
                json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": EVENTS}})
            )
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message["type"] == "error" and "limit" in json.dumps(message).lower()


async def test_cases_ingested_over_rest_reach_subscribers_too(ws_url, client, token_for):
    """Events come from the unit of work's commit, not from GraphQL: the bulk route counts."""
    from tests.catalog.builders import unique
    from tests.conftest import auth_header
    from tests.corpus import avid_cases

    model = f"rest-live-{secrets.token_hex(3)}"
    reader = await token_for("cases:read")
    cases = unique(avid_cases(2))
    for c in cases:
        c["model"] = {"name": model, "version": "1"}
    async with subscribed(ws_url, reader, {"f": {"model": model}}) as ws:
        resp = await client.post(
            "/catalog/v1/cases:bulk",
            json=cases,
            headers=auth_header(await token_for("cases:ingest")),
        )
        ids = {r["id"] for r in resp.json()["results"]}
        got = {(await next_payload(ws))["data"]["caseEvents"]["case"]["id"] for _ in ids}
        assert got == ids


async def test_a_revoked_token_ends_its_subscription(ws_url, client, app):
    auth = app.state.auth
    async with app.state.db.transaction() as s:
        record, secret = await auth.create_client(
            s, name=f"live-{secrets.token_hex(3)}", scopes=["cases:read"]
        )
    creds = (record.client_id, secret)
    token = (
        await client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=creds)
    ).json()["access_token"]
    async with subscribed(ws_url, token, {}) as ws:
        revoked = await client.post("/oauth/revoke", data={"token": token}, auth=creds)
        assert revoked.status_code == 200
        message: dict = {"type": "next", "payload": {}}
        while "errors" not in message.get("payload", {}):  # other tests' events may come first
            message = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        [error] = message["payload"]["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED" and "revoked" in error["message"]
        assert json.loads(await asyncio.wait_for(ws.recv(), 5.0))["type"] == "complete"


async def closed_with(ws):
    """The close frame the server sends next (messages before it are skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 5.0)
    assert closed.value.rcvd is not None, "closed without a close frame (the handler crashed)"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def subscribe(payload, sub_id="1"):
    return json.dumps({"id": sub_id, "type": "subscribe", "payload": payload})


MALFORMED = {
    "not JSON": ("{nope", 4400),
    "a JSON list": ("[1, 2]", 4400),
    "a JSON string": ('"hello"', 4400),
    "a JSON number": ("5", 4400),
    "JSON null": ("null", 4400),
    "no type": ('{"id": "1"}', 4400),
    "a type that is not a string": ('{"type": ["subscribe"]}', 4400),
    "an unknown type": ('{"type": "bogus"}', 4400),
    "a server message": ('{"type": "next", "id": "1", "payload": {}}', 4400),
    "a subscribe without an id": (json.dumps({"type": "subscribe", "payload": {}}), 4400),
    "a subscribe with a list id": (json.dumps({"type": "subscribe", "id": [1]}), 4400),
    "a subscribe with a number id": (subscribe({"query": EVENTS}, sub_id=7), 4400),
    "a subscribe without a payload": ('{"type": "subscribe", "id": "1"}', 4400),
    "a subscribe with a null payload": (subscribe(None), 4400),
    "a subscribe with a string payload": (subscribe("x"), 4400),
    "a subscribe without a query": (subscribe({}), 4400),
    "a query that is not a string": (subscribe({"query": 5}), 4400),
    "variables that are a list": (subscribe({"query": EVENTS, "variables": [1]}), 4400),
    "an operationName that is a number": (subscribe({"query": EVENTS, "operationName": 3}), 4400),
    "a complete with a list id": ('{"type": "complete", "id": [1]}', 4400),
    "a second connection_init": ('{"type": "connection_init"}', 4429),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_message_closes_with_the_protocols_code(ws_url, token_for, case):
    message, code = MALFORMED[case]
    token = await token_for("cases:read")
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(message)
        assert (await closed_with(ws))[0] == code


async def test_a_duplicate_subscriber_id_is_4409(ws_url, token_for):
    async with subscribed(ws_url, await token_for("cases:read"), {}) as ws:
        await ws.send(subscribe({"query": EVENTS}))
        assert await closed_with(ws) == (4409, "Subscriber for 1 already exists")


async def test_a_subscribe_before_connection_init_is_4401(ws_url):
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(subscribe({"query": EVENTS}))
        assert await closed_with(ws) == (4401, "Unauthorized")


async def test_before_connection_init_complete_ping_and_pong_are_answered_as_after(
    ws_url, token_for
):
    """The protocol refuses only operations (a subscribe, above) before the acknowledgement:
    a `complete` then stops nothing (no operation can exist) and is dropped, as graphql-ws's
    own server drops it; a ping is answered and a pong needs no answer. The connection then
    initialises and serves as usual."""
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send('{"type": "complete", "id": "1"}')
        await ws.send('{"type": "pong"}')
        await ws.send('{"type": "ping"}')
        # The first answer is the ping's: the complete and the pong were answered by nothing.
        assert json.loads(await asyncio.wait_for(ws.recv(), 5.0)) == {"type": "pong"}
        token = await token_for("cases:read")
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5.0))["type"] == "connection_ack"
        await ws.send(subscribe({"query": "{ __typename }"}, "q"))
        assert (await answer(ws, "q"))["payload"] == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("kind", ["connection_ack", "next", "error", "complete-without-id"])
async def test_a_malformed_message_before_connection_init_is_4400(ws_url, kind):
    message = {"type": kind, "id": "1", "payload": {}}
    if kind == "complete-without-id":
        message = {"type": "complete"}
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps(message))
        assert (await closed_with(ws))[0] == 4400


def graphql_view(app):
    return next(r.app for r in app.router.routes if getattr(r, "path", None) == "/graphql")


async def test_no_connection_init_within_the_wait_closes_with_4408(
    ws_url, app, token_for, monkeypatch
):
    """strawberry's wait (a minute by default), shortened here: a ping does not count as the
    connection_init, and a connection initialised in time outlives the wait."""
    view = graphql_view(app)
    monkeypatch.setattr(view, "connection_init_wait_timeout", timedelta(seconds=0.3))
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send('{"type": "ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5.0)) == {"type": "pong"}
        assert await closed_with(ws) == (4408, "Connection initialisation timeout")
    token = await token_for("cases:read")
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5.0))["type"] == "connection_ack"
        await asyncio.sleep(0.6)
        await ws.send(subscribe({"query": "{ __typename }"}, "q"))
        assert (await answer(ws, "q"))["payload"] == {"data": {"__typename": "Query"}}


async def test_a_second_connection_init_is_4429(ws_url, token_for):
    token = await token_for("cases:read")
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = json.dumps(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        )
        await ws.send(init)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5.0))["type"] == "connection_ack"
        await ws.send(init)
        assert await closed_with(ws) == (4429, "Too many initialisation requests")


async def test_a_null_connection_init_payload_is_allowed_and_unauthenticated(ws_url):
    """The protocol's payload is optional and nullable: no token (4403), not a bad message."""
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send('{"type": "connection_init", "payload": null}')
        assert (await closed_with(ws))[0] == 4403


async def answer(ws, sub_id):
    """The next message for operation `sub_id` (other tests' case events may come first)."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        if message.get("id") == sub_id:
            return message


async def operation_errors(ws, payload):
    await ws.send(subscribe(payload, sub_id="doc"))
    message = await answer(ws, "doc")
    assert message["type"] == "error", message
    return message["payload"]


async def test_bad_documents_are_errors_not_internal_or_a_bare_complete(ws_url, token_for):
    """Each answered on the same connection: a bad document ends its operation, not the
    socket (a syntax error or an unknown operation excepted, below)."""
    async with subscribed(ws_url, await token_for("cases:read"), {}) as ws:
        two_named = "query A { __typename } query B { __typename }"
        [error] = await operation_errors(ws, {"query": two_named})
        assert error["message"] == (
            "Must provide operation name if query contains multiple operations."
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        errors = await operation_errors(ws, {"query": "{ __typename } { __typename }"})
        assert {e["message"] for e in errors} == {
            "This anonymous operation must be the only defined operation."
        }
        assert {e["extensions"]["code"] for e in errors} == {"BAD_USER_INPUT"}
        # The document guard's refusal (raised by an extension) was a bare `complete`.
        directives = "{ __typename " + "@include(if: true) " * (L.MAX_DIRECTIVES + 1) + "}"
        [error] = await operation_errors(ws, {"query": directives})
        assert error["extensions"]["limit"] == "max_directives"
        [error] = await operation_errors(ws, {"query": ""})
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and "query" in error["message"]
        # The connection still serves.
        await ws.send(subscribe({"query": "query A { __typename }", "operationName": "A"}, "ok"))
        message = await answer(ws, "ok")
        assert message == {"id": "ok", "type": "next", "payload": {"data": {"__typename": "Query"}}}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"query": "{"}, "Syntax Error: Expected Name, found <EOF>."),
        ({"query": "{ " + "__typename " * (L.MAX_TOKENS + 1) + "}"}, f"more than {L.MAX_TOKENS}"),
        ({"query": "query A { __typename }", "operationName": "Z"}, 'Unknown operation named "Z".'),
    ],
)
async def test_an_unreadable_document_closes_with_4400_and_the_reason(
    ws_url, token_for, payload, reason
):
    """strawberry's rule for the document that names no operation to run (HTTP answers 400):
    these were a bare `complete` (syntax, token limit) or an INTERNAL error (unknown name)."""
    async with subscribed(ws_url, await token_for("cases:read"), {}) as ws:
        await ws.send(subscribe(payload, sub_id="doc"))
        code, got = await closed_with(ws)
        assert code == 4400 and reason in got
