"""Settings: typed, read once; a bad value stops start-up with one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_defaults(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.catalog_url == f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}"
    assert s.embedded_search and s.issuer == "http://127.0.0.1:8000" and not s.production


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("FAILCAT_DATABASE_URL", "mysql://x", "FAILCAT_DATABASE_URL"),
        ("FAILCAT_SEARCH_URL", "ftp://os", "FAILCAT_SEARCH_URL"),
        ("FAILCAT_ENV", "staging", "FAILCAT_ENV"),
        ("FAILCAT_ACCESS_TOKEN_TTL_S", "abc", "FAILCAT_ACCESS_TOKEN_TTL_S"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable_and_exit_2(var, value, needle, tmp_path):
    env = {**os.environ, var: value, "FAILCAT_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "services.gateway.cli", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
