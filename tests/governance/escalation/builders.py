"""Builders for escalation tests: rules through GraphQL, corpus cases at chosen times, and
waiting for the indexer (which judges the rules) to have taken given cases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import bindparam, text

from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.helpers import data, gql
from tests.safeguards.builders import a_name, ingest

__all__ = ["a_name", "ingest"]

CREATE = """mutation($rule: EscalationRuleInput!) { createEscalationRule(rule: $rule) {
  secret rule { id name kind query threshold windowMinutes days webhookUrl ticketUrl
                blockRelease team clearance enabled createdBy } } }"""
DELIVERIES = """query($rule: String!, $first: Int!, $after: String) {
  escalationDeliveries(rule: $rule, first: $first, after: $after) {
    nodes { id firingId action url status attempts nextAttemptAt deliveredAt lastStatusCode
            lastError ticketUrl caseIds log { attempt statusCode error durationMs } }
    pageInfo { hasNextPage endCursor } } }"""


async def create_rule(client: Any, token: str, rule: dict[str, Any]) -> tuple[dict, str]:
    answer = data(await gql(client, token, CREATE, {"rule": rule}))["createEscalationRule"]
    return answer["rule"], answer["secret"]


async def deliveries(client: Any, token: str, rule: str, first: int = 50) -> list[dict]:
    body = await gql(client, token, DELIVERIES, {"rule": rule, "first": first})
    return data(body)["escalationDeliveries"]["nodes"]


def cases(model: str, specs: list[tuple[str, str]], version: str = "1.0.0") -> list[dict]:
    """One real AIID incident per (severity, occurred_at), as cases of `model`."""
    out = unique(aiid_cases(len(specs), model=model))
    for case, (severity, occurred) in zip(out, specs, strict=True):
        case["model"] = {"name": model, "version": version}
        case["severity"] = severity
        case["occurred_at"] = occurred
    return out


async def indexed(db: Any, ids: list[str], within: float = 30.0) -> None:
    """Until the indexer has taken every revision of `ids`: their outbox rows are deleted in
    the transaction that also judged the rules, so its firings are committed too."""
    stmt = text("SELECT count(*) FROM search_outbox WHERE case_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )

    async def left() -> int:
        async with db.transaction() as session:
            return (await session.execute(stmt, {"ids": ids})).scalar_one()

    await eventually(lambda: _zero(left), within, f"cases {ids} not indexed")


async def _zero(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 30.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still false after {within}s")
        await asyncio.sleep(0.02)
