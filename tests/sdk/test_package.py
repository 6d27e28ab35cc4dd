"""failcat-client is a light package: httpx and the standard library only, Python >= 3.9.

The strongest check installs it with pip into a fresh virtual environment of the oldest
supported Python found here (else this one) and captures to the real server from there;
pip's cache makes reruns work offline.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from tests.sdk.conftest import FailcatServer, unique_source

SDK = Path(__file__).resolve().parents[2] / "sdk" / "python"
PACKAGE = SDK / "failcat_client"
ALLOWED = set(sys.stdlib_module_names) | {"httpx", "failcat_client", "__future__"}


def oldest_python() -> str:
    candidates = [
        os.environ.get("FAILCAT_PY39", ""),
        shutil.which("python3.9") or "",
        *map(str, sorted(Path.home().glob(".pyenv/versions/3.9.*/bin/python"))),
    ]
    for candidate in candidates:
        # A pyenv shim exists even where it cannot run: ask the interpreter itself.
        if (
            candidate
            and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0
        ):
            return candidate
    return sys.executable


def test_sources_import_only_httpx_and_the_stdlib_and_parse_as_python39() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        assert "from __future__ import annotations" in source, path
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            # The pytest plugin runs inside pytest, so it alone may import it.
            allowed = ALLOWED | ({"pytest"} if path.name == "pytest_plugin.py" else set())
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
    meta = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "failcat-client"
    assert meta["requires-python"] == ">=3.9"
    assert [d.split(">")[0].split("=")[0] for d in meta["dependencies"]] == ["httpx"]


SMOKE = textwrap.dedent(
    """
    import asyncio, json, sys, sysconfig
    import httpx
    after_httpx = set(sys.modules)
    import failcat_client
    from failcat_client import AsyncClient, Client

    def outside_stdlib(name):
        path = getattr(sys.modules[name], "__file__", None) or ""
        stdlib = sysconfig.get_paths()["stdlib"]
        return bool(path) and (not path.startswith(stdlib) or "site-packages" in path)

    added = {m for m in set(sys.modules) - after_httpx if sys.modules.get(m) is not None}
    foreign = sorted({m.split(".")[0] for m in added if outside_stdlib(m)} - {"failcat_client"})
    url, client_id, secret, source = sys.argv[1:5]
    model = {"name": "py-smoke", "version": "1"}
    with Client(url, client_id, secret, flush_interval_s=0.05) as client:
        ids = [client.capture(model=model, data_source=source, input={"i": i}) for i in range(10)]
        assert client.flush(60)
        sync_stats = client.stats()

    async def main():
        async with AsyncClient(url, client_id, secret, flush_interval_s=0.05) as client:
            more = [client.capture(model=model, data_source=source, input={"i": i})
                    for i in range(10, 20)]
            assert await client.flush(60)
            return more, client.stats()

    more, async_stats = asyncio.run(main())
    print(json.dumps({"version": list(sys.version_info[:2]), "foreign": foreign,
                      "ids": ids + more, "sync": sync_stats, "async": async_stats}))
    """
)


def test_installs_alone_with_httpx_and_captures_from_a_fresh_venv(
    server: FailcatServer, tmp_path: Path
) -> None:
    python = oldest_python()
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check"]
    installed = subprocess.run(
        [*pip, "install", "-q", str(SDK)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, f"pip install sdk/python failed:\n{installed.stderr}"
    listed = subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True)
    packages = {p["name"].lower() for p in json.loads(listed.stdout)}
    # httpx's own dependencies are all that came along: nothing of the server's stack.
    assert "httpx" in packages and "failcat-client" in packages
    assert not packages & {"pydantic", "fastapi", "sqlalchemy", "orjson", "authlib", "failcat"}

    source = unique_source("fresh-venv")
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    done = subprocess.run(
        [str(venv / "bin/python"), "-I", str(script), *server.client_args(), source],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: `services` and `shared` are out of reach
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(python) != Path(sys.executable):
        assert report["version"] == [3, 9]
    assert report["foreign"] == []
    assert report["sync"]["sent"] == 10 and report["async"]["sent"] == 10
    assert {c["externalId"] for c in server.cases(source)} == set(report["ids"])
