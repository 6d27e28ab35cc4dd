"""failcat-client applies the capture policy of each (model, data source) before sending: a
case that does not qualify never leaves the process (counted `filtered`), one lacking a
required path is counted `invalid` and not sent; the rest arrive, recording the policy
version they met. The client's rules agree with the server's on real corpus cases."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from typing import Any

import httpx
import pytest
from failcat_client import AsyncClient, Client
from failcat_client.policy import Policy

from services.catalog.capture_policies import CapturePolicyIn, CompiledPolicy
from services.catalog.schemas import CaseIn
from tests.corpus import aiid_cases
from tests.sdk.conftest import FailcatServer, unique_source

SET = """mutation($m: String!, $d: String!, $p: CapturePolicyInput!) {
  setCapturePolicy(model: $m, dataSource: $d, policy: $p) { version }
}"""


class Bodies(httpx.AsyncHTTPTransport):
    """The real network, keeping every bulk request body and every policy lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []
        self.lookups = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":bulk"):
            self.sent.extend(json.loads(request.content))
        if request.url.path.endswith("/capture-policies"):
            self.lookups += 1
        return await super().handle_async_request(request)


def corpus_cases(n: int, model: str, source: str) -> list[dict[str, Any]]:
    cases = aiid_cases(n, model=model)
    for c in cases:
        c["data_source"] = source
        c["external_id"] = f"{c['external_id']}-{source}"
    return cases


def test_cases_that_do_not_qualify_never_leave_the_producer(server: FailcatServer) -> None:
    model, source = "incident-classifier", unique_source("policy")
    server.graphql(
        SET,
        m=model,
        d=source,
        p={
            "qualify": {"confidenceBelow": 0.6, "latencyOverMs": 90},
            "required": ["input.parties"],
        },
    )
    cases = corpus_cases(120, model, source)
    for c in cases[::10]:
        c["input"] = {}  # lacks input.parties
    transport = Bodies()
    client = Client(*server.client_args(), transport=transport, flush_interval_s=0.05)
    for c in cases:
        client.capture(**copy.deepcopy(c))
    assert client.flush(60)
    stats = client.stats()
    client.close()

    def qualifies(c: dict[str, Any]) -> bool:
        return c["confidence"] < 0.6 or c["latency_ms"] > 90

    lacking = [c for c in cases if not c["input"]]
    kept = [c for c in cases if c["input"] and qualifies(c)]
    filtered = [c for c in cases if c["input"] and not qualifies(c)]
    assert kept and filtered and lacking
    assert stats["filtered"] == len(filtered)
    assert stats["invalid"] == len(lacking)
    assert stats["sent"] == len(kept) and stats["pending"] == 0
    # Only the kept ones were on the wire; the server stored exactly them, under version 1.
    assert sorted(c["external_id"] for c in transport.sent) == sorted(
        c["external_id"] for c in kept
    )
    stored = server.cases(source)
    assert sorted(c["externalId"] for c in stored) == sorted(c["external_id"] for c in kept)
    versions = server.graphql(
        """query($f: CaseFilterInput) { cases(filter: $f, first: 500) {
             nodes { capturePolicyVersion } } }""",
        f={"dataSource": source},
    )["cases"]["nodes"]
    assert {v["capturePolicyVersion"] for v in versions} == {1}
    assert transport.lookups == 1  # once per key, not per case


def test_a_changed_policy_is_read_again(server: FailcatServer) -> None:
    model, source = "incident-classifier", unique_source("refresh")
    server.graphql(SET, m=model, d=source, p={"qualify": {"confidenceBelow": 0.55}})
    cases = corpus_cases(100, model, source)
    client = Client(*server.client_args(), flush_interval_s=0.05, policy_refresh_s=1)
    for c in cases[:50]:
        client.capture(**copy.deepcopy(c))
    assert client.flush(60)
    first = client.stats()
    assert first["sent"] == sum(c["confidence"] < 0.55 for c in cases[:50])
    server.graphql(SET, m=model, d=source, p={"qualify": {"confidenceAbove": 0.9}})
    time.sleep(1.5)
    client.flush(5)  # a cycle that reads it again
    for c in cases[50:]:
        client.capture(**copy.deepcopy(c))
    assert client.flush(60)
    second = client.stats()
    client.close()
    assert second["sent"] - first["sent"] == sum(c["confidence"] > 0.9 for c in cases[50:])
    assert second["filtered"] == 100 - second["sent"]


def test_async_client_applies_policies_as_client_does(server: FailcatServer) -> None:
    """AsyncClient: the same lookup (once, then again after `policy_refresh_s`), the same
    `filtered` and `invalid` counters, and only qualifying cases on the wire."""
    model, source = "incident-classifier", unique_source("async")
    server.graphql(
        SET, m=model, d=source, p={"qualify": {"confidenceBelow": 0.6}, "required": ["input"]}
    )
    cases = corpus_cases(120, model, source)
    for c in cases[:60:10]:
        del c["input"]  # lacks the required path
    transport = Bodies()

    async def run() -> tuple[dict[str, int], dict[str, int]]:
        client = AsyncClient(
            *server.client_args(), transport=transport, flush_interval_s=0.05, policy_refresh_s=1
        )
        async with client:
            for c in cases[:60]:
                client.capture(**copy.deepcopy(c))
            assert await client.flush(60)
            first = client.stats()
            server.graphql(SET, m=model, d=source, p={"qualify": {"confidenceAbove": 0.9}})
            await asyncio.sleep(1.5)
            await client.flush(5)  # a cycle that reads it again
            for c in cases[60:]:
                client.capture(**copy.deepcopy(c))
            assert await client.flush(60)
            return first, client.stats()

    first, second = asyncio.run(run())
    lacking = [c for c in cases[:60] if "input" not in c]
    kept_1 = [c for c in cases[:60] if "input" in c and c["confidence"] < 0.6]
    kept_2 = [c for c in cases[60:] if c["confidence"] > 0.9]
    assert kept_1 and kept_2 and lacking
    assert first["invalid"] == len(lacking)
    assert first["filtered"] == 60 - len(lacking) - len(kept_1)
    assert first["sent"] == len(kept_1)
    assert second["filtered"] - first["filtered"] == 60 - len(kept_2)
    assert second["sent"] - first["sent"] == len(kept_2)
    kept = sorted(c["external_id"] for c in kept_1 + kept_2)
    assert sorted(c["external_id"] for c in transport.sent) == kept
    assert sorted(c["externalId"] for c in server.cases(source)) == kept
    # Read at start and again after the refresh interval (how often more depends on how
    # long the machine takes; the second policy applying to the second half proves the read).
    assert transport.lookups >= 2


def test_without_a_policy_or_with_filtering_off_everything_is_sent(
    server: FailcatServer,
) -> None:
    model, source = "incident-classifier", unique_source("none")
    cases = corpus_cases(20, model, source)
    client = Client(*server.client_args(), flush_interval_s=0.05)
    for c in cases:
        client.capture(**copy.deepcopy(c))
    assert client.flush(60)
    assert client.stats()["sent"] == 20 and client.stats()["filtered"] == 0
    client.close()

    server.graphql(SET, m=model, d=source, p={"qualify": {"confidenceBelow": 0.01}})
    transport = Bodies()
    off = Client(
        *server.client_args(), transport=transport, flush_interval_s=0.05, capture_policies=False
    )
    others = [{**c, "external_id": c["external_id"] + "-off"} for c in cases]
    for c in others:
        off.capture(**copy.deepcopy(c))
    assert off.flush(60)
    stats = off.stats()
    off.close()
    # Sent, and refused by the server (which enforces the policy itself).
    assert transport.lookups == 0 and len(transport.sent) == 20
    assert stats["filtered"] == 0 and stats["invalid"] == 20


# --- the client's rules are the server's ---------------------------------------------------
DEFINITIONS = [
    {"qualify": {"confidence_below": 0.7}},
    {"qualify": {"confidence_above": 0.9, "latency_over_ms": 80}},
    {"qualify": {"prediction_mismatch": True}},
    {"qualify": {"signals": ["policy_violation"], "exception": True}},
    {"required": ["input.parties.0", "environment.deployer", "failure_mode"]},
    {"qualify": {"confidence_below": 0.6}, "required": ["expected.label"]},
]


def variants(case: dict[str, Any], i: int) -> dict[str, Any]:
    """Real cases, varied so that each condition both holds and fails somewhere."""
    c = copy.deepcopy(case)
    if i % 4 == 1:
        c["expected"] = {"label": "safe"}
    if i % 5 == 2:
        c["signals"] = {"policy_violation": "pii" if i % 2 else ""}
    if i % 7 == 3:
        c["signals"] = {"exception": {"type": "TimeoutError"}}
    if i % 6 == 4:
        c.pop("expected")
    return c


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: json.dumps(d))
def test_client_and_server_decide_alike(definition: dict[str, Any]) -> None:
    parsed = CapturePolicyIn.model_validate(definition)
    server_policy = CompiledPolicy(
        model="m",
        data_source="d",
        version=1,
        name="p",
        qualify=parsed.qualify,
        required=tuple(parsed.required),
        schema=None,
    )
    wire = parsed.model_dump(mode="json", exclude_none=True)
    client_policy = Policy({"name": "p", "version": 1, **wire})
    outcomes = set()
    for i, case in enumerate(itertools.islice(aiid_cases(300), 300)):
        c = variants(case, i)
        server_ok = not server_policy.violations(CaseIn.model_validate(c), c)
        client_ok = not client_policy.missing(c) and client_policy.qualifies(c)
        assert client_ok == server_ok, (definition, c)
        outcomes.add(server_ok)
    assert outcomes == {True, False}  # each definition both keeps and refuses
