"""Mistakes an operator makes are answered in one line naming what to fix (exit 2), never
"unexpected error"; and what `ingest` could not read is kept in its error file as it was."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
from itertools import islice
from pathlib import Path

import orjson
import pytest

from tests.cli.conftest import (
    CLI,
    RUN_TIMEOUT_S,
    Result,
    clean_env,
    failcat,
    free_port,
    settings_env,
)
from tests.corpus import CORPORA, aiid_cases
from tests.sdk.conftest import unique_source


@pytest.fixture
async def migrated(settings, db):
    """The session's migrated database, as a CLI subprocess's environment."""
    return clean_env(**settings_env(settings))


def one_line(result: Result) -> str:
    assert result.code == 2, result
    assert "unexpected error" not in result.err and len(result.err.splitlines()) == 1, result.err
    return result.err.removeprefix("failcat: ").rstrip("\n")


# --- import of another importer's file ------------------------------------------------------
@pytest.mark.parametrize(
    "kind, corpus, problem",
    [
        ("atlas", "avid_reports.jsonl", "not an ATLAS case study: no 'id'"),
        ("avid", "atlas_case_studies.jsonl", "not an AVID report: no 'metadata.report_id'"),
    ],
)
async def test_import_of_the_wrong_kind_of_file_names_its_line(
    kind, corpus, problem, migrated, elsewhere
):
    path = CORPORA / corpus
    result = await failcat("import", kind, str(path), cwd=elsewhere, env=migrated)
    assert one_line(result).startswith(f"{path}:1: {problem} (")


async def test_a_record_of_an_array_without_its_id_is_named_by_position(migrated, elsewhere):
    with (CORPORA / "atlas_case_studies.jsonl").open(encoding="utf-8") as fh:
        studies = [json.loads(line) for line in islice(fh, 2)]
    del studies[1]["id"]
    path = elsewhere / "studies.json"
    path.write_text(json.dumps(studies))
    result = await failcat("import", "atlas", str(path), cwd=elsewhere, env=migrated)
    assert one_line(result).startswith(f"{path}: record 2: not an ATLAS case study: no 'id'")


# --- agreement's numeric option -------------------------------------------------------------
@pytest.mark.parametrize("resamples", ["-1", "100001"])
async def test_agreement_resamples_out_of_range(resamples, migrated, elsewhere):
    result = await failcat(
        "agreement", "--taxonomy", "CSETv1", "--field", "Physical Objects",
        "--resamples", resamples, cwd=elsewhere, env=migrated,
    )  # fmt: skip
    assert one_line(result) == f"--resamples {resamples}: must be between 0 and 100,000"


# --- import bundle --trust URL --------------------------------------------------------------
async def test_a_trust_url_that_fails_is_named_with_its_problem(server, elsewhere):
    bundle = elsewhere / "b.tar.gz"
    bundle.write_bytes(b"never read: the keys are fetched first")
    missing = f"{server.url}/no-such-jwks.json"
    result = await failcat(
        "import", "bundle", "--trust", missing, str(bundle), cwd=elsewhere, env=server.operator_env
    )
    assert one_line(result) == f"--trust {missing}: answered 404 Not Found, not the JWKS"

    closed = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    result = await failcat(
        "import", "bundle", "--trust", closed, str(bundle), cwd=elsewhere, env=server.operator_env
    )
    assert one_line(result).startswith(f"--trust {closed}: cannot fetch it: ")
    assert "Connection refused" in result.err


# --- users create without a terminal --------------------------------------------------------
async def without_terminal(*argv: str, cwd: Path, env: dict[str, str], stdin: str) -> Result:
    """The CLI in a session of its own: no controlling terminal, as under cron or CI (getpass
    would otherwise ask on the tester's terminal)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *argv, cwd=cwd, env=env, start_new_session=True,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), RUN_TIMEOUT_S)
    return Result(proc.returncode or 0, out.decode(), err.decode())


async def test_users_create_without_a_terminal_says_how_to_give_the_password(migrated, elsewhere):
    argv = ("users", "create", "--username", unique_source("frank"), "--roles", "curator")
    result = await without_terminal(*argv, cwd=elsewhere, env=migrated, stdin="")
    assert one_line(result) == (
        "a password is needed and there is no terminal to ask: pipe it in with --password-stdin"
    )
    result = await without_terminal(
        *argv, "--password-stdin", cwd=elsewhere, env=migrated, stdin=""
    )
    assert one_line(result) == "--password-stdin: standard input is empty: pipe the password in"
    result = await without_terminal(
        *argv, "--password-stdin", cwd=elsewhere, env=migrated, stdin="a long enough secret\n"
    )
    assert result.code == 0, result.err


# --- the error file keeps what could not be read ---------------------------------------------
async def test_error_file_keeps_an_unreadable_line_as_text(migrated, elsewhere):
    source = unique_source("aiid-raw")
    lines = [orjson.dumps({**c, "data_source": source}).decode() for c in aiid_cases(3)]
    lines[1] = lines[1][:-1]  # cut short: not JSON
    path = elsewhere / "cases.ndjson"
    path.write_text("\n".join(lines) + "\n")
    errors = elsewhere / "refused.ndjson"
    result = await failcat(
        "ingest", str(path), "--error-file", str(errors), cwd=elsewhere, env=migrated
    )
    assert result.code == 1, result.err
    [kept] = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert kept["_meta"]["line"] == 2 and kept["_meta"]["status"] == "invalid"
    assert kept["raw_line"] == lines[1]
    assert "value" not in kept


async def test_error_file_keeps_the_cells_of_a_row_that_did_not_convert(migrated, elsewhere):
    with (CORPORA / "aiid_incidents.jsonl").open(encoding="utf-8") as fh:
        incidents = [json.loads(line) for line in islice(fh, 2)]
    header = ["incident_id", "title", "score"]
    rows = [[str(r["incident_id"]), r["title"], "0.5"] for r in incidents]
    rows[1][2] = "high"  # not a number
    path = elsewhere / "incidents.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    mapping = elsewhere / "mapping.yaml"
    mapping.write_text(
        "columns:\n  incident_id: external_id\n  title: title\n"
        "  score: {path: confidence, type: number}\n"
        "defaults:\n  model: {name: incident-classifier, version: '1.0'}\n"
        f"  data_source: {unique_source('aiid-raw-csv')}\n"
    )
    errors = elsewhere / "refused.ndjson"
    result = await failcat(
        "ingest", str(path), "--mapping", str(mapping), "--error-file", str(errors),
        cwd=elsewhere, env=migrated,
    )  # fmt: skip
    assert result.code == 1, result.err
    [kept] = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert kept["_meta"]["line"] == 3
    assert kept["_meta"]["errors"] == [{"path": "$", "message": "score: not a number: 'high'"}]
    assert kept["raw_row"] == dict(zip(header, rows[1], strict=True))


# --- the shape of the command line ------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, commands",
    [((), "serve, worker, db"), (("retention",), "run"), (("users",), "create, list, disable")],
)
async def test_a_missing_command_is_named_by_the_commands_there_are(argv, commands, tmp_path):
    said = one_line(await failcat(*argv, cwd=tmp_path, env=clean_env()))
    # argparse named it by its internal dest: "required: retention_command".
    assert "_command" not in said and "required: command" not in said, said
    assert f"a command is needed: {commands}" in said, said


def test_a_reader_that_leaves_early_is_no_error():
    """`failcat ... | head`: the command ends quietly, as other tools do (128 + SIGPIPE)."""
    script = (
        "import sys\n"
        "from services.cli.errors import guarded\n"
        "def pages():\n"
        "    for _ in range(1000):\n"
        "        print('x' * 1000)\n"
        "    return 0\n"
        "sys.exit(guarded(pages))\n"
    )
    with subprocess.Popen(
        [CLI[0], "-c", script],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout.read(10) == b"x" * 10
        proc.stdout.close()  # the reader leaves, as head does
        err = proc.stderr.read()
        assert proc.wait(RUN_TIMEOUT_S) == 141
    assert err == b"", err  # was "failcat: Broken pipe"
