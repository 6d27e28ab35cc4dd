"""`failcat search QUERY`, `failcat search verify [--repair]` and `failcat reindex` (embedded)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json

import pytest
from sqlalchemy import select

from services.audit.models import AuditEntry
from services.search.cli import add_commands
from services.search.service import SearchService
from shared.db import Database
from shared.migrate import upgrade_async
from shared.settings import Settings
from tests.search.builders import make_case


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="failcat")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
async def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(tmp_path))
    settings = Settings(data_dir=tmp_path)
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    service = await SearchService.start(settings, db)
    async with db.transaction() as s:
        for i in range(3):
            await make_case(s, title=f"Kerplunk failure {i}", severity=f"S{i}", tags=["cli"])
        await make_case(s, title="Not indexed yet", outbox=True)
    await service.drain_outbox()
    await service.close()
    await db.dispose()
    return tmp_path


async def test_search_prints_hits_and_facets(data_dir, capsys):
    code, out, _ = await asyncio.to_thread(
        run, capsys, "search", "kerplunk", "--first", "2", "--facets", "severity,tags"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "3 cases"
    assert lines[1].split()[:4] == ["SCORE", "ID", "SEV", "STATUS"]
    assert sum("Kerplunk failure" in line for line in lines) == 2
    assert any(line.startswith("severity: S0 (1)") for line in lines)
    assert "tags: cli (3)" in out
    assert any(line.startswith("more: --after ") for line in lines)
    code, out, _ = await asyncio.to_thread(run, capsys, "search", "kerplunk", "--json")
    assert json.loads(out)["total"] == 3
    assert json.loads(out)["page_info"]["has_next_page"] is False
    code, out, _ = await asyncio.to_thread(run, capsys, "search", "tags:CLX")
    assert code == 0 and "no tags 'clx'; did you mean: cli" in out


async def test_verify_and_reindex(data_dir, capsys):
    code, out, _ = await asyncio.to_thread(run, capsys, "search", "verify")
    assert code == 0 and json.loads(out)["in_sync"] is True
    code, out, err = await asyncio.to_thread(run, capsys, "reindex")
    assert code == 0 and json.loads(out)["in_sync"] is True
    assert "reindex: 4/4 documents (100%)" in err


async def test_a_query_term_may_start_with_a_dash(data_dir, capsys):
    # argparse took `-severity:S0` for an unknown option: "unrecognized arguments" (exit 2),
    # so a query could not start with a negation, nor hold one unquoted.
    for argv in (
        ("-severity:S0", "kerplunk"),
        ("kerplunk", "-severity:S0", "--first", "5"),
        ("--first", "5", "-severity:S0", "kerplunk"),
    ):
        code, out, _ = await asyncio.to_thread(run, capsys, "search", *argv)
        assert code == 0 and out.splitlines()[0] == "2 cases", argv
    with pytest.raises(SystemExit) as help_asked:
        await asyncio.to_thread(run, capsys, "search", "-h")
    assert help_asked.value.code == 0 and "usage: failcat search" in capsys.readouterr().out


async def test_a_search_is_audited_as_the_operator_with_the_page_ids(data_dir, capsys):
    # AUDIT.md: an operator command on the host is `os:<user>`/`cli`, and a search records the
    # ids of the page it shows. `failcat search` recorded the actor `system` and no ids.
    code, out, _ = await asyncio.to_thread(
        run, capsys, "search", "kerplunk", "--first", "2", "--team", "nlp", "--json"
    )
    assert code == 0
    shown = [hit["id"] for hit in json.loads(out)["hits"]]
    db = Database(Settings(data_dir=data_dir).catalog_url)
    try:
        async with db.transaction() as s:
            [entry] = (
                await s.execute(select(AuditEntry).where(AuditEntry.action == "cases.search"))
            ).scalars()
    finally:
        await db.dispose()
    assert (entry.actor_subject, entry.actor_client, entry.actor_team) == (
        f"os:{getpass.getuser()}",
        "cli",
        "nlp",
    )
    assert entry.details == {"query": "kerplunk", "hits": 3, "ids": shown}
