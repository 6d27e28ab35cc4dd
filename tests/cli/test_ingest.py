"""`failcat ingest` from standard input, CSV with a column mapping, progress, `--resume` after a
run that stopped part-way, and the error file. Cases are real AIID incidents and AVID reports
(FAILCAT_CORPORA)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
from contextlib import asynccontextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from services.catalog import service
from services.catalog.models import DataSource, FailureCase
from services.cli import ingest as cli_ingest
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.cli.conftest import CLI, clean_env, failcat, settings_env
from tests.cli_run import failcat as in_process
from tests.corpus import CORPORA, aiid_cases, avid_cases
from tests.sdk.conftest import unique_source

COUNTS = ("created", "duplicate", "conflict", "invalid", "sampled_out")


def counts(**n: int) -> dict[str, int]:
    return {k: n.get(k, 0) for k in COUNTS}


def ndjson(cases: list[dict[str, Any]]) -> str:
    return "\n".join(orjson.dumps(c).decode() for c in cases) + "\n"


async def stored(db, data_source: str) -> list[tuple[str, Any]]:
    async with db.transaction() as s:
        rows = await s.execute(
            select(FailureCase.external_id, FailureCase.input)
            .join(DataSource, DataSource.id == FailureCase.data_source_id)
            .where(DataSource.name == data_source)
        )
    return list(rows.all())


@pytest.fixture
async def migrated(settings, db):
    """The session's migrated database, as a CLI subprocess's environment."""
    return clean_env(**settings_env(settings))


# --- standard input ------------------------------------------------------------------------
async def test_ndjson_from_stdin_with_dash_and_without_a_file(migrated, db, tmp_path):
    cases = unique(avid_cases(300))
    source = cases[0]["data_source"]
    cases[7]["confidence"] = 3  # refused, named by its line of stdin
    result = await failcat(
        "ingest", "-", "--batch", "100", cwd=tmp_path, env=migrated, stdin=ndjson(cases)
    )
    assert result.code == 1, result.err
    assert json.loads(result.out) == counts(created=299, invalid=1)
    assert "failcat: <stdin>:8: confidence: Input should be less than or equal to 1" in result.err
    # Total unknown on a pipe: the count so far.
    assert "ingested 100/?" in result.err and "ingested 300/?" in result.err
    assert len(await stored(db, source)) == 299

    # No FILE at all, stdin piped: read from it too (a JSON array this time, sniffed).
    again = await failcat(
        "ingest", cwd=tmp_path, env=migrated, stdin=orjson.dumps(cases[10:60]).decode()
    )
    assert again.code == 0, again.err
    assert json.loads(again.out) == counts(duplicate=50)


async def test_stdin_format_can_be_given_and_a_wrong_one_is_reported(migrated, tmp_path):
    cases = unique(avid_cases(5))
    result = await failcat(
        "ingest", "-", "--format", "ndjson", "--json", cwd=tmp_path, env=migrated,
        stdin=ndjson(cases),
    )  # fmt: skip
    assert result.code == 0 and result.err == ""  # --json: nothing but the counts
    assert json.loads(result.out) == counts(created=5)
    wrong = await failcat(
        "ingest", "-", "--format", "json", cwd=tmp_path, env=migrated, stdin=ndjson(cases)
    )
    assert wrong.code == 2 and "Traceback" not in wrong.err
    assert wrong.err.startswith("failcat: <stdin>:2: invalid JSON")


# --- CSV with a mapping, from real corpus records -----------------------------------------
def aiid_csv(path: Path, n: int, start: int = 0) -> list[dict[str, Any]]:
    """AIID incidents as a CSV someone else exported: their own column names."""
    with (CORPORA / "aiid_incidents.jsonl").open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in islice(fh, start, start + n)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["incident_id", "date", "title", "description", "harmed", "score", "labels"])
        for i, r in enumerate(records):
            w.writerow(
                [
                    r["incident_id"],
                    f"{r['date']}T00:00:00Z",
                    r["title"],
                    r["description"],
                    r["Alleged harmed or nearly harmed parties"],  # JSON text
                    f"{0.5 + (i % 50) / 100:.2f}",
                    "aiid, imported",
                ]
            )
    return records


MAPPING = """
columns:
  incident_id: external_id
  date: occurred_at
  title: title
  description: summary
  harmed: {path: input.parties, type: json}
  score: {path: confidence, type: number}
  labels: {path: tags, type: list}
defaults:
  model: {name: incident-classifier, version: "1.0"}
  data_source: %s
"""


async def test_csv_with_a_mapping_file(monkeypatch, settings, capsys, tmp_path, db):
    source = unique_source("aiid-csv")
    records = aiid_csv(tmp_path / "incidents.csv", 120)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING % source)
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(tmp_path / "incidents.csv"),
        "--mapping", str(mapping),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == counts(created=120)
    rows = dict(await stored(db, source))
    first = records[0]
    assert rows[first["incident_id"]] == {
        "parties": json.loads(first["Alleged harmed or nearly harmed parties"])
    }
    async with db.transaction() as s:
        case = (
            await s.execute(
                select(FailureCase).where(FailureCase.external_id == first["incident_id"])
            )
        ).scalar_one()
    assert case.title == first["title"] and case.confidence == 0.5
    assert case.tags == ["aiid", "imported"]
    assert case.occurred_at.date().isoformat() == first["date"]

    # The same mapping as JSON, the CSV from stdin (the mapping says it is CSV).
    source2 = unique_source("aiid-csv-stdin")
    (tmp_path / "mapping.json").write_text(
        json.dumps(
            {
                "columns": {"incident_id": "external_id", "title": "title",
                            "score": {"path": "confidence", "type": "number"}},
                "defaults": {"model": {"name": "m", "version": "1"}, "data_source": source2},
            }
        )
    )  # fmt: skip
    result = await failcat(
        "ingest", "--mapping", str(tmp_path / "mapping.json"), "-", cwd=tmp_path,
        env=clean_env(**settings_env(settings)),
        stdin=(tmp_path / "incidents.csv").read_text(encoding="utf-8"),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out) == counts(created=120)


async def test_a_bad_cell_is_an_invalid_item_named_by_line_and_column(
    monkeypatch, settings, capsys, tmp_path
):
    source = unique_source("aiid-csv-bad")
    path = tmp_path / "incidents.csv"
    aiid_csv(path, 3)
    text = path.read_text().splitlines()
    rows = list(csv.reader(io.StringIO("\n".join(text))))
    rows[2][5] = "high"  # score, not a number
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (tmp_path / "m.yaml").write_text(MAPPING % source)
    errors = tmp_path / "refused.ndjson"
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--mapping", str(tmp_path / "m.yaml"),
        "--error-file", str(errors),
    )  # fmt: skip
    assert code == 1
    assert json.loads(out) == counts(created=2, invalid=1)
    assert f"failcat: {path}:3: score: not a number: 'high'" in err
    [kept] = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert kept["_meta"] == {
        "line": 3,
        "status": "invalid",
        "errors": [{"path": "$", "message": "score: not a number: 'high'"}],
    }


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "mapping {m}: no such file"),
        ("columns: [unclosed", "mapping {m}: not valid YAML or JSON at line 1: "),
        ("- a\n- b\n", "mapping {m}: expected an object with `columns`"),
        ("columns: {score: {path: confidence, type: num}}", "mapping {m}: columns.score: "
         "unknown type 'num' (one of string, number, integer, boolean, json, list)"),
        ("columns: {score: confidance}", "mapping {m}: columns.score: 'confidance' is not a "
         "case field path"),
        ("columns: {a: title, b: title}", "mapping {m}: columns.b: title is already set by "
         "column 'a'"),
        ("columns: {nope: title}", "{csv}:1: the mapping names column 'nope', which the "
         "header lacks"),
        ("colums: {a: title}", "mapping {m}: expected an object with `columns`"),
    ],
)  # fmt: skip
async def test_a_bad_mapping_file_is_one_line_and_exit_2(
    monkeypatch, settings, capsys, tmp_path, db, content, message
):
    csv_path = tmp_path / "incidents.csv"
    aiid_csv(csv_path, 3)
    m = tmp_path / "mapping.yaml"
    if content is not None:
        m.write_text(content)
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(csv_path), "--mapping", str(m)
    )
    assert code == 2 and out == ""
    assert err.startswith("failcat: " + message.format(m=m, csv=csv_path)), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


async def test_mapping_is_for_csv_only(monkeypatch, settings, capsys, tmp_path):
    (tmp_path / "m.yaml").write_text("columns: {a: title}")
    (tmp_path / "c.ndjson").write_text(ndjson(unique(avid_cases(2))))
    code, _, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(tmp_path / "c.ndjson"),
        "--mapping", str(tmp_path / "m.yaml"),
    )  # fmt: skip
    assert code == 2 and "--mapping applies to CSV input, not ndjson" in err


# --- progress -----------------------------------------------------------------------------
async def test_progress_bar_on_request_and_quiet_in_json_mode(
    monkeypatch, settings, capsys, tmp_path
):
    path = tmp_path / "cases.ndjson"
    path.write_text(ndjson(unique(aiid_cases(250))))
    code, _, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--batch", "100", "--progress"
    )
    assert code == 0, err
    frames = err.split("\r\033[K")
    assert any(f.startswith("[" + "#" * 30 + "] 250/250 100% ") for f in frames), err
    assert "items/s" in frames[-1] and "ingested " not in err
    code, out, err = await in_process(monkeypatch, settings, capsys, "ingest", str(path), "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == counts(duplicate=250)


async def test_csv_progress_counts_records_not_lines(monkeypatch, settings, capsys, tmp_path):
    """Real incident write-ups hold newlines: a quoted cell spans lines, and is one record."""
    path = tmp_path / "incidents.csv"
    records = aiid_csv(path, 200, start=480)
    assert sum(r["description"].count("\n") for r in records) >= 3
    (tmp_path / "m.yaml").write_text(MAPPING % unique_source("csv-progress"))
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--mapping", str(tmp_path / "m.yaml"),
        "--batch", "150",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == counts(created=200)
    assert "ingested 150/200\ningested 200/200\n" in err, err


# --- resume -------------------------------------------------------------------------------
def interrupting_sink(after_batches: int, exc: BaseException):
    """The real local sink, interrupted once `after_batches` batches were stored: the last of
    them stored without its answer reaching the command (the worst moment)."""
    real = cli_ingest.local_sink

    @asynccontextmanager
    async def sink_factory():
        async with real() as sink:
            calls = 0

            async def sink_once(items):
                nonlocal calls
                calls += 1
                results = await sink(items)
                if calls == after_batches:
                    raise exc
                return results

            yield sink_once

    return sink_factory


@pytest.mark.parametrize(
    "exc, exit_code, first_line",
    [
        # One line: what was sent (the third batch stored, its answer lost) and accepted.
        (KeyboardInterrupt(), 130, "failcat: interrupted: 600 items sent (200 unanswered), "
         "399 accepted (399 created, 0 duplicate, 0 conflict, 1 invalid, 0 sampled_out); "
         "stopped after 400 items: resume with --resume 400\n"),
        (ConnectionResetError(104, "Connection reset by peer"), 2, "failcat: Connection reset "
         "by peer (stopped after 400 items: resume with --resume 400)"),
    ],
    ids=["ctrl-c", "failure"],
)  # fmt: skip
async def test_resume_after_an_interruption_stores_each_item_once(
    monkeypatch, settings, capsys, tmp_path, db, exc, exit_code, first_line
):
    cases = unique(aiid_cases(1000))
    assert len(cases) > 700
    source = cases[0]["data_source"]
    for i in (50, 450, 650):  # one refused before the stop, one in the lost batch, one after
        cases[i]["severity"] = "S9"
    path = tmp_path / "cases.ndjson"
    path.write_text(ndjson(cases))
    errors = tmp_path / "refused.ndjson"
    monkeypatch.setattr(cli_ingest, "local_sink", interrupting_sink(3, exc))
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--batch", "200",
        "--error-file", str(errors),
    )  # fmt: skip
    assert code == exit_code and out == "" and "Traceback" not in err
    assert first_line in err
    position = int(err.split("--resume ")[1].split(")")[0].split()[0])
    assert position == 400
    # The third batch was stored, unanswered (two of the 600 items were refused).
    assert len(await stored(db, source)) == 598

    monkeypatch.undo()
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--batch", "200",
        "--error-file", str(errors), "--resume", str(position),
    )  # fmt: skip
    assert code == 1, err
    # The lost batch is answered duplicate (199 + 1 refused), the rest created.
    assert json.loads(out) == counts(created=len(cases) - 601, duplicate=199, invalid=2)
    rows = await stored(db, source)
    assert sorted(r[0] for r in rows) == sorted(
        c["external_id"] for i, c in enumerate(cases) if i not in (50, 450, 650)
    )
    # The error file kept the refused items of both runs, each once, with its line.
    kept = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [k["_meta"]["line"] for k in kept] == [51, 451, 651]
    assert all(k["_meta"]["errors"][0]["path"] == "severity" for k in kept)


async def test_resume_skips_items_of_every_format(monkeypatch, settings, capsys, tmp_path):
    cases = unique(aiid_cases(30))
    (tmp_path / "c.json").write_bytes(orjson.dumps(cases))
    code, out, _ = await in_process(
        monkeypatch, settings, capsys, "ingest", str(tmp_path / "c.json"), "--resume", "25"
    )
    assert code == 0 and json.loads(out) == counts(created=5)
    records = aiid_csv(tmp_path / "i.csv", 10, start=200)
    source = unique_source("resume-csv")
    (tmp_path / "m.yaml").write_text(MAPPING % source)
    code, out, _ = await in_process(
        monkeypatch, settings, capsys, "ingest", str(tmp_path / "i.csv"),
        "--mapping", str(tmp_path / "m.yaml"), "--resume", "8",
    )  # fmt: skip
    assert code == 0 and json.loads(out) == counts(created=2)
    assert len(records) == 10


async def test_resume_past_the_end_is_one_line_and_exit_2(migrated, tmp_path):
    """A position beyond the last item is a mistake (another file, a typo), not a finished run;
    the end itself is (a run stopped after its last batch)."""
    cases = unique(aiid_cases(30))
    (tmp_path / "c.json").write_bytes(orjson.dumps(cases))
    aiid_csv(tmp_path / "i.csv", 10, start=480)  # a write-up spans lines: 10 records all the same
    (tmp_path / "m.yaml").write_text(MAPPING % unique_source("resume-end"))
    runs = [
        (["c.json", "--resume", "31"], "", "c.json, which has 30 items"),
        (["i.csv", "--mapping", "m.yaml", "--resume", "11"], "", "i.csv, which has 10 items"),
        (["-", "--resume", "40"], ndjson(cases), "<stdin>, which has 30 items"),
    ]
    for argv, stdin, where in runs:
        result = await failcat("ingest", *argv, cwd=tmp_path, env=migrated, stdin=stdin)
        assert result.code == 2 and result.out == "", result.err
        assert result.err == (
            f"failcat: --resume {argv[-1]}: past the end of {where} (nothing ingested)\n"
        )
    at_end = await failcat("ingest", "c.json", "--resume", "30", "--json", cwd=tmp_path,
                           env=migrated)  # fmt: skip
    assert at_end.code == 0 and json.loads(at_end.out) == counts()


# --- the error file names capture policies ----------------------------------------------------
async def test_error_file_keeps_policy_refusals(monkeypatch, settings, capsys, tmp_path, db):
    cases = unique(aiid_cases(20))
    model, source = cases[0]["model"]["name"], cases[0]["data_source"]
    for c in cases:
        c["model"]["version"] = "1.0.0"
    async with db.transaction() as s:
        await service.set_capture_policy(
            s, model, source, {"name": "triage", "qualify": {"confidence_below": 0.6}}, SYSTEM
        )
    path = tmp_path / "cases.ndjson"
    path.write_text(ndjson(cases))
    errors = tmp_path / "refused.ndjson"
    code, out, _ = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--error-file", str(errors)
    )
    low = [c for c in cases if c["confidence"] < 0.6]
    assert code == 1
    assert json.loads(out) == counts(created=len(low), invalid=20 - len(low))
    kept = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert len(kept) == 20 - len(low)
    assert all(
        k["_meta"]["errors"][0]["message"].startswith(
            "does not qualify under capture policy 'triage' (version 1)"
        )
        for k in kept
    )
    assert {k["external_id"] for k in kept} == {
        c["external_id"] for c in cases if c["confidence"] >= 0.6
    }


async def test_ctrl_c_prints_the_position_and_resume_stores_each_item_once(migrated, db, tmp_path):
    """A real SIGINT to a running `failcat ingest`, then `--resume` from what it printed."""
    base = unique(aiid_cases(1000))
    cases = [{**c, "external_id": f"{c['external_id']}-{n}"} for n in range(3) for c in base]
    source = cases[0]["data_source"]
    path = tmp_path / "cases.ndjson"
    path.write_text(ndjson(cases))
    argv = [*CLI, "ingest", str(path), "--batch", "100"]
    # As from a terminal: a shell starts background jobs with SIGINT ignored, and Python keeps
    # an inherited SIG_IGN, so a suite run in the background would send a Ctrl-C to nobody.
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, env=migrated, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    seen = b""
    while b"ingested 300/" not in seen:
        line = await asyncio.wait_for(proc.stderr.readline(), 120)
        assert line, seen.decode()
        seen += line
    proc.send_signal(signal.SIGINT)
    rest = await asyncio.wait_for(proc.stderr.read(), 120)
    out = await proc.stdout.read()
    assert await proc.wait() == 130 and out == b""
    err = (seen + rest).decode()
    assert "Traceback" not in err
    # One line after the progress: what this run sent and what was accepted, and the position.
    *progress, last = rest.decode().strip().splitlines()
    assert all(line.startswith("ingested ") for line in progress), err
    assert last.startswith("failcat: interrupted: "), err
    position = int(last.rsplit("--resume ", 1)[1])
    assert position >= 300 and position % 100 == 0
    assert f" {position} accepted ({position} created, " in last, err

    result = await failcat(
        "ingest", str(path), "--batch", "100", "--resume", str(position), "--json",
        cwd=tmp_path, env=migrated,
    )  # fmt: skip
    assert result.code == 0, result.err
    answered = json.loads(result.out)
    assert answered["created"] + answered["duplicate"] == len(cases) - position
    rows = await stored(db, source)
    assert sorted(r[0] for r in rows) == sorted(c["external_id"] for c in cases)


async def test_no_file_and_stdin_a_terminal_is_a_usage_error(migrated, tmp_path):
    import pty

    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "ingest", cwd=tmp_path, env=migrated, stdin=follower,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2 and out == b""
    assert err.decode() == (
        "failcat: no FILE given and standard input is a terminal: give FILE, or - with cases "
        "piped in\n"
    )


# --- what other tools write: a byte order mark, another encoding, big cells, shifted rows ---
BOM = b"\xef\xbb\xbf"


async def test_a_byte_order_mark_is_skipped_in_every_format(
    monkeypatch, settings, capsys, migrated, tmp_path, db
):
    """Excel's "CSV UTF-8" and Windows tools start a file with a BOM. A JSON array with one was
    read as NDJSON (each of its lines an invalid item: 1 case counted as 6 refused), an NDJSON
    file lost its first line and a CSV its first column's name."""
    cases = unique(aiid_cases(40))
    source = cases[0]["data_source"]
    array = tmp_path / "cases.json"
    array.write_bytes(BOM + json.dumps(cases[:10], indent=2, ensure_ascii=False).encode())
    lines = tmp_path / "cases.ndjson"
    lines.write_bytes(BOM + ndjson(cases[10:20]).encode())
    for path in (array, lines):
        code, out, err = await in_process(monkeypatch, settings, capsys, "ingest", str(path))
        assert code == 0, err
        assert json.loads(out) == counts(created=10)

    csv_source = unique_source("aiid-csv-bom")
    aiid_csv(tmp_path / "incidents.csv", 10)
    (tmp_path / "bom.csv").write_bytes(BOM + (tmp_path / "incidents.csv").read_bytes())
    (tmp_path / "m.yaml").write_text(MAPPING % csv_source)
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(tmp_path / "bom.csv"),
        "--mapping", str(tmp_path / "m.yaml"),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == counts(created=10)

    # Standard input, its format given or told from the first bytes.
    for argv in (["-"], ["-", "--format", "ndjson"]):
        piped = await failcat(
            "ingest", *argv, "--json", cwd=tmp_path, env=migrated,
            stdin="\ufeff" + ndjson(cases[20:40]),
        )  # fmt: skip
        assert piped.code == 0, piped.err
        assert json.loads(piped.out)["invalid"] == 0
    assert len(await stored(db, source)) == 40
    assert len(await stored(db, csv_source)) == 10


async def test_bytes_that_are_not_utf8_are_named_by_line_byte_and_column(
    monkeypatch, settings, capsys, tmp_path, db
):
    """A file saved as Windows-1252: a CSV stopped with "unexpected error: UnicodeDecodeError"
    (no line), an NDJSON line and a JSON array were "invalid JSON at column 1: str is not
    valid UTF-8: surrogates not allowed". Now the record or line holding such bytes is refused
    on its own, naming where; the rest is stored."""
    source = unique_source("aiid-cp1252")
    path = tmp_path / "incidents.csv"
    records = aiid_csv(path, 30)
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.encode("cp1252", errors="replace"))
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
    bad = [i for i, row in enumerate(rows) if max(",".join(row).encode("cp1252", "replace")) > 127]
    assert bad and len(bad) < 30  # real titles with curly quotes and accents
    (tmp_path / "m.yaml").write_text(MAPPING % source)
    errors = tmp_path / "refused.ndjson"
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--mapping", str(tmp_path / "m.yaml"),
        "--error-file", str(errors),
    )  # fmt: skip
    assert code == 1, err
    assert json.loads(out) == counts(created=30 - len(bad), invalid=len(bad))
    assert "Traceback" not in err and "unexpected error" not in err
    kept = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [k["raw_row"]["incident_id"] for k in kept] == [records[i]["incident_id"] for i in bad]
    first = kept[0]["_meta"]
    assert first["errors"][0]["message"].endswith("(save the file as UTF-8)")
    assert f"failcat: {path}:{first['line']}: " in err
    assert " not UTF-8 text: byte 0x" in first["errors"][0]["message"]
    assert len(await stored(db, source)) == 30 - len(bad)

    cases = unique(aiid_cases(30))
    lines = [orjson.dumps(c).decode() for c in cases]
    wrong = [i for i, line in enumerate(lines) if any(ord(ch) > 127 for ch in line)]
    assert wrong
    nd = tmp_path / "cases.ndjson"
    nd.write_bytes("\n".join(lines).encode("cp1252", errors="replace") + b"\n")
    code, out, err = await in_process(monkeypatch, settings, capsys, "ingest", str(nd))
    assert code == 1 and json.loads(out)["invalid"] == len(wrong)
    line = lines[wrong[0]]
    column = next(n for n, ch in enumerate(line, start=1) if ord(ch) > 127)
    byte = line[column - 1].encode("cp1252", "replace")[0]
    assert (
        f"failcat: {nd}:{wrong[0] + 1}: not UTF-8 text: byte 0x{byte:02x} at column {column} "
        "(save the file as UTF-8)"
    ) in err, err

    array = tmp_path / "cases.json"
    array.write_bytes(json.dumps(cases, indent=2, ensure_ascii=False).encode("cp1252", "replace"))
    code, out, err = await in_process(monkeypatch, settings, capsys, "ingest", str(array))
    assert code == 2 and out == ""
    assert err.startswith(f"failcat: {array}:") and "not UTF-8 text: byte 0x" in err, err
    assert ":1: " not in err and "surrogates" not in err


async def test_a_cell_over_csv_default_limit_is_read(monkeypatch, settings, capsys, tmp_path, db):
    """csv refuses a cell over 128 KB; the command died with "unexpected error: Error: field
    larger than field limit (131072)", storing nothing. Such a cell is read and the item is
    judged by the case's own limits (a summary of at most 100,000 characters)."""
    source = unique_source("aiid-big-cell")
    path = tmp_path / "incidents.csv"
    records = aiid_csv(path, 5)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    rows[3][3] = (records[2]["description"] + " ") * (140_000 // len(records[2]["description"]))
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    (tmp_path / "m.yaml").write_text(MAPPING % source)
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--mapping", str(tmp_path / "m.yaml")
    )
    assert code == 1, err
    assert json.loads(out) == counts(created=4, invalid=1)
    assert f"failcat: {path}:4: summary: String should have at most 100000 characters" in err
    assert len(await stored(db, source)) == 4


async def test_a_record_with_more_cells_than_the_header_is_refused(
    monkeypatch, settings, capsys, tmp_path, db
):
    """An unquoted comma shifts a record: its cells past the header's were dropped and the rest
    stored under the wrong columns, silently. Now the record is refused, named by line, and
    the error file keeps its cells."""
    source = unique_source("aiid-shifted")
    path = tmp_path / "incidents.csv"
    records = aiid_csv(path, 6)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    r = records[4]
    # The writer of this line forgot to quote a title with a comma.
    # Without a summary, parties or score, it still parsed: stored with "0.5" as its tag.
    lines.append(f"x-{r['incident_id']},{r['date']}T00:00:00Z,Shifted, a title,,,0.5,a\r\n")
    path.write_text("".join(lines), encoding="utf-8")
    (tmp_path / "m.yaml").write_text(MAPPING % source)
    errors = tmp_path / "refused.ndjson"
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--mapping", str(tmp_path / "m.yaml"),
        "--error-file", str(errors),
    )  # fmt: skip
    assert code == 1, err
    assert json.loads(out) == counts(created=6, invalid=1)
    line = len(path.read_text(encoding="utf-8").splitlines())
    assert (
        f"failcat: {path}:{line}: 8 cells, the header has 7 columns (a cell with an unquoted "
        "comma?)"
    ) in err, err
    [kept] = [orjson.loads(x) for x in errors.read_bytes().splitlines()]
    assert kept["raw_row"]["incident_id"] == f"x-{r['incident_id']}"
    assert kept["raw_row"]["null"] == ["a"]
    assert len(await stored(db, source)) == 6


async def test_a_mapped_column_the_header_has_twice_stops_the_run(
    monkeypatch, settings, capsys, tmp_path
):
    """CSETv1's own export has two 'AI System' columns (the corpus keys the second
    'AI System (2)'). A record is read by column name, so only the last was read: a mapping
    naming it took the second column's cells and dropped the first's without a word (here
    every value, the analyst having filled only the first)."""
    with (CORPORA / "aiid_classifications_CSETv1.jsonl").open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in islice(fh, 20)]
    keys = list(records[0])
    header = ["AI System" if k == "AI System (2)" else k for k in keys]
    path = tmp_path / "cset.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in records:
            w.writerow(["" if k == "AI System (2)" else r[k] for k in keys])
    mapping = tmp_path / "m.json"
    mapping.write_text(
        json.dumps(
            {
                "columns": {"Incident ID": "external_id", "AI System": "input.ai_system"},
                "defaults": {"model": {"name": "cset", "version": "1"},
                             "data_source": unique_source("cset")},
            }
        )
    )  # fmt: skip
    code, out, err = await in_process(
        monkeypatch, settings, capsys, "ingest", str(path), "--mapping", str(mapping)
    )
    first, second = [i + 1 for i, name in enumerate(header) if name == "AI System"]
    assert code == 2 and out == ""
    assert err == (
        f"failcat: {path}:1: the mapping names column 'AI System', which the header has more "
        f"than once (columns {first}, {second}): rename one\n"
    )
    # The columns of `failcat export cases --format csv`, one of them twice.
    exported = tmp_path / "export.csv"
    exported.write_text(
        "model.name,model.version,data_source,title,title\r\n"
        f"cset,1,cset,{records[0]['AI System Description'][:80]!r},\r\n"
    )
    code, out, err = await in_process(monkeypatch, settings, capsys, "ingest", str(exported))
    assert code == 2 and err == f"failcat: {exported}:1: column 'title' is in the header twice\n"
