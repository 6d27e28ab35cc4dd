"""The README's first steps and every walkthrough under docs/ run as written, against a
fresh `failcat serve` (embedded backend), in the order a new user meets them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import served

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_URL = "http://127.0.0.1:8000"
# The README's set-up block (make run / make test) is what CI itself runs: not repeated here.
SETUP_BLOCK = re.compile(r"^make (run|test)\b", re.M)
WALKTHROUGHS = ["docs/capture.md", "docs/triage.md", "docs/regression.md"]


def shell_blocks(path: Path) -> list[str]:
    text = path.read_text()
    blocks = re.findall(r"^```(?:sh|bash)\n(.*?)^```", text, flags=re.S | re.M)
    return [b for b in blocks if not SETUP_BLOCK.search(b)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A fresh `failcat serve`; its data dir is `.failcat` under `home`, as `make run`'s is
    under the checkout, so the README's relative paths hold with `home` as the directory."""
    home = tmp_path_factory.mktemp("docs")
    env = {"FAILCAT_DATA_DIR": str(home / ".failcat")}
    cli = [sys.executable, "-m", "services.gateway.cli"]
    subprocess.run(
        [*cli, "db", "upgrade"], env={**os.environ, **env}, check=True, capture_output=True
    )
    with served(env) as base:
        yield base, home


def run_blocks(doc: str, blocks: list[str], base: str, cwd: Path, data_dir: Path) -> str:
    """All blocks of one page in one bash, stopping at the first failing command."""
    assert blocks, f"{doc} has no shell blocks"
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '--- {doc} block {n}' >&2\n{block.replace(DOCUMENTED_URL, base)}"
        for n, block in enumerate(blocks, start=1)
    )
    env = {**os.environ, "FAILCAT_DATA_DIR": str(data_dir)}
    env.pop("TOKEN", None)
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{doc} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_readme_first_steps_run_as_written(server):
    base, home = server
    out = run_blocks("README.md", shell_blocks(ROOT / "README.md"), base, home, home / ".failcat")
    # The example ingests one case and finds it with facets: no GraphQL error on the way.
    compact = out.replace(" ", "")
    assert '"status":"CREATED"' in compact, out
    assert '"errors":[{' not in compact and '{"errors"' not in compact, out
    assert '"search":{"total":1' in compact, out


@pytest.mark.parametrize("doc", WALKTHROUGHS)
def test_walkthrough_runs_as_written(server, doc):
    base, home = server
    run_blocks(doc, shell_blocks(ROOT / doc), base, ROOT, home / ".failcat")


def test_every_walkthrough_is_listed_and_tested():
    listed = set(re.findall(r"\]\(([a-z]+\.md)\)", (ROOT / "docs/README.md").read_text()))
    assert {f"docs/{name}" for name in listed} == set(WALKTHROUGHS)
