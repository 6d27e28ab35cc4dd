"""What a new user sees on the first embedded start (`make run`): the bootstrap client and
where to go, not the migration tool's chatter."""

from __future__ import annotations

import json

from tests.cli.conftest import free_port, start_server, stop
from tests.conftest import make_settings


async def test_the_first_embedded_start_logs_no_alembic_chatter(tmp_path):
    settings = await make_settings("embedded", tmp_path / "data")
    settings.data_dir.mkdir()  # empty: this start migrates and creates the bootstrap client
    err_path = tmp_path / "serve.err"
    with err_path.open("wb") as err:
        proc = await start_server(settings, free_port(), stderr=err)
    await stop(proc)
    lines = err_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any("created bootstrap admin client" in r["msg"] for r in records), lines
    assert [r for r in records if r["logger"].startswith("alembic")] == []
    assert any("client_secret:" in line for line in lines)  # the first start's one showing
