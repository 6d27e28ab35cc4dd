"""`failcat ingest FILE` and `failcat db upgrade` through the real entry point."""

from __future__ import annotations

import json

import orjson
import pytest
from sqlalchemy import func, select

from services.catalog.models import DataSource, FailureCase
from tests.catalog.builders import unique
from tests.cli_run import failcat
from tests.corpus import avid_cases


async def _stored(db, data_source: str) -> int:
    async with db.transaction() as s:
        stored = await s.execute(
            select(func.count())
            .select_from(FailureCase)
            .join(DataSource, DataSource.id == FailureCase.data_source_id)
            .where(DataSource.name == data_source)
        )
    return stored.scalar_one()


async def test_ingest_ndjson_file_reports_progress_and_bad_items(
    monkeypatch, settings, capsys, tmp_path, db
):
    cases = unique(avid_cases(1200))
    cases[5]["confidence"] = 7
    path = tmp_path / "cases.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(c) for c in cases))
    code, out, err = await failcat(monkeypatch, settings, capsys, "ingest", str(path))
    # One item refused: the rest stored, the refused one named by line and field, exit 1.
    assert code == 1, err
    assert json.loads(out) == {
        "created": 1199,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 1,
        "sampled_out": 0,
    }
    assert "ingested 1000/1200" in err and "ingested 1200/1200" in err
    assert f"failcat: {path}:6: confidence: Input should be less than or equal to 1" in err
    assert "Traceback" not in err

    # The same file as a JSON array again: nothing is stored twice; the line is still right.
    again = tmp_path / "cases.json"
    again.write_bytes(orjson.dumps(cases, option=orjson.OPT_INDENT_2))
    code, out, err = await failcat(monkeypatch, settings, capsys, "ingest", str(again))
    assert code == 1, err
    assert json.loads(out) == {
        "created": 0,
        "duplicate": 1199,
        "conflict": 0,
        "invalid": 1,
        "sampled_out": 0,
    }
    starts = [n for n, text in enumerate(again.read_text().splitlines(), 1) if text == "  {"]
    assert f"failcat: {again}:{starts[5]}: confidence:" in err
    assert await _stored(db, cases[0]["data_source"]) == 1199


async def test_ndjson_bad_line_is_named_by_its_line_and_the_good_lines_are_stored(
    monkeypatch, settings, capsys, tmp_path, db
):
    cases = unique(avid_cases(4))
    lines = [orjson.dumps(c) for c in cases]
    lines[1] = lines[1][:-1]  # line 2 is cut short: not JSON
    path = tmp_path / "cases.ndjson"
    # A blank line between: numbering follows the file, not the items.
    path.write_bytes(lines[0] + b"\n" + lines[1] + b"\n\n" + b"\n".join(lines[2:]) + b"\n")
    errors = tmp_path / "refused.ndjson"
    code, out, err = await failcat(
        monkeypatch, settings, capsys, "ingest", str(path), "--error-file", str(errors)
    )
    assert code == 1, err
    assert json.loads(out) == {
        "created": 3,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 1,
        "sampled_out": 0,
    }
    [problem] = [e for e in err.splitlines() if e.startswith("failcat: ")]
    assert problem.startswith(f"failcat: {path}:2: invalid JSON at column ")
    assert await _stored(db, cases[0]["data_source"]) == 3
    [kept] = [orjson.loads(x) for x in errors.read_bytes().splitlines()]
    assert kept["_meta"]["line"] == 2 and kept["_meta"]["status"] == "invalid"


async def test_every_item_invalid_is_not_a_success(monkeypatch, settings, capsys, tmp_path, db):
    cases = unique(avid_cases(400))
    for c in cases:
        del c["model"]
    path = tmp_path / "cases.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(c) for c in cases))
    errors = tmp_path / "refused.ndjson"
    code, out, err = await failcat(
        monkeypatch, settings, capsys, "ingest", str(path), "--error-file", str(errors)
    )
    assert code == 1, err
    assert json.loads(out) == {
        "created": 0,
        "duplicate": 0,
        "conflict": 0,
        "invalid": 400,
        "sampled_out": 0,
    }
    assert f"{path}: 0 created, 0 duplicate, 0 conflict, 400 invalid, 0 sampled_out" in err
    assert "380 more not shown" in err
    kept = [orjson.loads(x) for x in errors.read_bytes().splitlines()]
    assert [k["_meta"]["line"] for k in kept] == list(range(1, 401))
    assert kept[0]["_meta"]["errors"] == [{"path": "model", "message": "Field required"}]
    # The refused items, fixed, re-ingest as they are: the bulk path ignores `_meta`.
    for k in kept:
        k["model"] = {"name": "fixed-model", "version": "1"}
    errors.write_bytes(b"\n".join(orjson.dumps(k) for k in kept))
    code, out, _ = await failcat(monkeypatch, settings, capsys, "ingest", str(errors))
    assert code == 0
    assert json.loads(out)["created"] == 400
    assert await _stored(db, cases[0]["data_source"]) == 400


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "{path}: no such file"),
        (b'[{"model": 1},\n {"title": ]', "{path}:2: invalid JSON at column 12: "),
        (b'{"model": {"name": "m"}}', None),
        (b"[\n\n  {}, {}", "{path}:3: invalid JSON at column 9: unexpected end of data"),
    ],
)
async def test_unusable_files_are_one_line_and_exit_2(
    monkeypatch, settings, capsys, tmp_path, content, expected
):
    path = tmp_path / "cases.json"
    if content is not None:
        path.write_bytes(content)
    code, out, err = await failcat(monkeypatch, settings, capsys, "ingest", str(path))
    if expected is None:  # one object: read as one case, which is refused by field
        assert code == 1 and "model.version: Field required" in err
        return
    assert code == 2, err
    assert out == ""
    assert err.startswith("failcat: " + expected.format(path=path)), err
    assert len(err.splitlines()) == 1


async def test_a_bad_query_is_one_line(monkeypatch, settings, capsys, app):
    code, out, err = await failcat(monkeypatch, settings, capsys, "search", "severity:S9")
    assert code == 2 and out == ""
    expected = "expected one of S0, S1, S2, S3, S4 for 'severity', got 'S9'"
    assert err == f"failcat: query: column 10: {expected}\n"


async def test_db_upgrade_is_idempotent(monkeypatch, settings, capsys):
    code, _, err = await failcat(monkeypatch, settings, capsys, "db", "upgrade")
    assert code == 0 and "database at head" in err


async def test_csv_with_an_unknown_column_is_refused_whole(monkeypatch, settings, capsys, tmp_path):
    path = tmp_path / "cases.csv"
    path.write_text("title,model.name,model.version,data_source,colour\nx,m,1,s,red\n")
    code, out, err = await failcat(monkeypatch, settings, capsys, "ingest", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"failcat: {path}:1: unknown column 'colour'; the columns are")
