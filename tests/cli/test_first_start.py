"""What a new user sees on the first embedded start (`make run`): the bootstrap client and
where to go, not the migration tool's chatter."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.cli.conftest import CLI, clean_env, free_port, stop


async def test_the_first_embedded_start_logs_no_alembic_chatter(tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    err_path = tmp_path / "serve.err"
    env = clean_env(FAILCAT_DATA_DIR=str(data_dir), FAILCAT_RUN_INDEXER_IN_PROCESS="false")
    with err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "serve", "--port", str(port), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                assert proc.returncode is None, err_path.read_text()
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
    finally:
        await stop(proc)
    lines = err_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any("created bootstrap admin client" in r["msg"] for r in records), lines
    assert [r for r in records if r["logger"].startswith("alembic")] == []
    assert any("client_secret:" in line for line in lines)  # the first start's one showing
