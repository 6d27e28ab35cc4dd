"""`failcat ingest FILE` and `failcat db upgrade` through the real entry point."""

from __future__ import annotations

import asyncio
import json

import orjson
from sqlalchemy import func, select

from services.catalog.models import DataSource, FailureCase
from services.gateway.cli import main
from tests.catalog.builders import unique
from tests.corpus import avid_cases


def _failcat(monkeypatch, settings, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FAILCAT_DATABASE_URL", settings.catalog_url)
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def failcat(*args):
    # The CLI runs its own event loop (asyncio.run); keep it off the test loop.
    return await asyncio.to_thread(_failcat, *args)


async def test_ingest_ndjson_file_reports_progress_and_bad_items(
    monkeypatch, settings, capsys, tmp_path, db
):
    cases = unique(avid_cases(1200))
    cases[5]["confidence"] = 7
    path = tmp_path / "cases.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(c) for c in cases))
    code, out, err = await failcat(monkeypatch, settings, capsys, "ingest", str(path))
    assert code == 0
    assert json.loads(out) == {
        "created": 1199,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 1,
        "sampled_out": 0,
    }
    assert "ingested 1000/1200" in err and "ingested 1200/1200" in err
    assert '"index":5' in err and "confidence" in err

    # The same file as a JSON array again: nothing is stored twice.
    again = tmp_path / "cases.json"
    again.write_bytes(orjson.dumps(cases))
    code, out, _ = await failcat(monkeypatch, settings, capsys, "ingest", str(again))
    assert json.loads(out) == {
        "created": 0,
        "duplicate": 1199,
        "conflict": 0,
        "invalid": 1,
        "sampled_out": 0,
    }
    async with db.transaction() as s:
        stored = await s.execute(
            select(func.count())
            .select_from(FailureCase)
            .join(DataSource, DataSource.id == FailureCase.data_source_id)
            .where(DataSource.name == cases[0]["data_source"])
        )
    assert stored.scalar_one() == 1199


async def test_db_upgrade_is_idempotent(monkeypatch, settings, capsys):
    code, _, err = await failcat(monkeypatch, settings, capsys, "db", "upgrade")
    assert code == 0 and "database at head" in err
