"""Local (operator) mode never creates a database as a side effect of a read or a typo."""

from __future__ import annotations

import sqlite3

import pytest

from shared.migrate import upgrade_async
from tests.cli.conftest import clean_env, failcat, settings_env
from tests.conftest import fresh_postgres_database, make_settings, postgres_url

READS_AND_TYPOS = [
    ("ingest", "cases.ndjson"),
    ("search", "refund"),
    ("search", "verify"),
    ("reindex",),
    ("clients", "list"),
    ("users", "list"),
    ("keys", "rotate"),
]


@pytest.mark.parametrize("argv", READS_AND_TYPOS, ids=lambda a: " ".join(a))
async def test_no_database_is_one_line_and_creates_nothing(argv, elsewhere):
    (elsewhere / "cases.ndjson").write_text('{"model": {"name": "m", "version": "1"}}\n')
    result = await failcat(*argv, cwd=elsewhere, env=clean_env())
    assert result.code == 2
    where = elsewhere / ".failcat" / "catalog.db"
    assert result.err == (
        f"failcat: no database at {where} (FAILCAT_DATA_DIR=.failcat): "
        "run `failcat db upgrade` (or pass --url URL to use a running server)\n"
    )
    assert sorted(p.name for p in elsewhere.iterdir()) == ["cases.ndjson"]


async def test_unmigrated_embedded_database_is_refused(elsewhere):
    data = elsewhere / "data"
    data.mkdir()
    sqlite3.connect(data / "catalog.db").close()  # exists, holds no tables
    env = clean_env(FAILCAT_DATA_DIR=str(data))
    result = await failcat("search", "refund", cwd=elsewhere, env=env)
    assert result.code == 2
    assert "is not migrated (revision none (empty)" in result.err
    assert "run `failcat db upgrade`" in result.err and len(result.err.splitlines()) == 1
    assert sorted(p.name for p in data.iterdir()) == ["catalog.db"]  # no search.db either

    # db upgrade creates it; then a search needs the index, which only reindex builds.
    assert (await failcat("db", "upgrade", cwd=elsewhere, env=env)).code == 0
    result = await failcat("search", "refund", cwd=elsewhere, env=env)
    assert result.code == 2 and "no search index at" in result.err
    assert (await failcat("reindex", cwd=elsewhere, env=env)).code == 0
    result = await failcat("search", "refund", cwd=elsewhere, env=env)
    assert result.code == 0 and result.out.startswith("0 cases"), result.err


async def test_postgres_missing_or_unmigrated_database_is_refused(elsewhere):
    base = postgres_url()
    missing = base.rsplit("/", 1)[0] + "/failcat_no_such_database"
    env = clean_env(FAILCAT_DATABASE_URL=missing, FAILCAT_DATA_DIR=str(elsewhere / "d"))
    result = await failcat("clients", "list", cwd=elsewhere, env=env)
    assert result.code == 2
    assert result.err.startswith("failcat: no database at postgresql+asyncpg://")
    assert "failcat_no_such_database: run `failcat db upgrade`" in result.err
    assert ":failcat@" not in result.err or "***" in result.err  # no password in messages

    empty = await fresh_postgres_database(base)
    env["FAILCAT_DATABASE_URL"] = empty
    result = await failcat("ingest", "x.json", cwd=elsewhere, env=env)
    assert result.code == 2 and "is not migrated (revision none (empty)" in result.err
    assert not (elsewhere / "d").exists()


async def test_a_migrated_database_is_used_from_any_directory(backend, elsewhere, tmp_path):
    settings = await make_settings(backend, tmp_path / "data")
    await upgrade_async(settings.catalog_url)
    env = clean_env(**settings_env(settings))
    result = await failcat("clients", "list", cwd=elsewhere, env=env)
    assert result.code == 0 and result.out.strip() == "[]", result.err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "argv, expected",
    [
        (("ingets", "x"), "failcat: argument command: invalid choice: 'ingets'"),
        (("ingest", "--resume", "x"), "failcat ingest: argument --resume: invalid int value"),
        (("search", "--first", "x"), "failcat search: argument --first: invalid int value"),
    ],
)
async def test_usage_errors_are_one_line(argv, expected, elsewhere):
    result = await failcat(*argv, cwd=elsewhere, env=clean_env())
    assert result.code == 2
    assert result.err.startswith(expected) and len(result.err.splitlines()) == 1
    assert list(elsewhere.iterdir()) == []
