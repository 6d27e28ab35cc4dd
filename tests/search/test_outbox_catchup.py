"""OpenSearch goes down mid-run: ingestion keeps working, the indexer catches up on return.

This stops a real OpenSearch, so it never touches the shared one: it starts a PRIVATE node
with the project's script (its own FAILCAT_INFRA_DIR), stops that node's process by its pid,
and starts the same installation again on the same port and data directory (the script's own
`start` would wipe the state). Torn down with the script's `stop`. Under CI=true a node that
cannot start fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.search.service import SearchService
from shared.db import Database
from shared.errors import Unavailable
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from shared.settings import Settings
from tests.conftest import backend_unavailable
from tests.search.builders import make_case, outbox_size

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "scripts" / "opensearch.sh"


@dataclass
class PrivateNode:
    infra_dir: Path
    url: str

    @property
    def state(self) -> Path:
        return self.infra_dir / "opensearch"

    def pid(self) -> int:
        return int((self.state / "opensearch.pid").read_text().strip())

    async def stop(self) -> None:
        pid = self.pid()
        self._env = _launch_env(pid)
        os.kill(pid, signal.SIGTERM)
        for _ in range(240):
            if not os.path.exists(f"/proc/{pid}"):  # noqa: ASYNC240 - a cheap stat
                return
            await asyncio.sleep(0.25)
        raise AssertionError("private OpenSearch did not stop")

    async def start_again(self) -> None:
        home = next(self.state.glob("opensearch-*"))
        cmd = [str(home / "bin" / "opensearch"), "-d", "-p", str(self.state / "opensearch.pid")]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", os.environ.get("FAILCAT_INFRA_USER", "failcat"), "--", *cmd]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            env=self._env,
            cwd="/",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await proc.wait() == 0
        await _wait_healthy(self.url, 180)


def _launch_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    keep = (
        "JAVA_HOME",
        "OPENSEARCH_JAVA_HOME",
        "OPENSEARCH_JAVA_OPTS",
        "OPENSEARCH_TMPDIR",
        "OPENSEARCH_PATH_CONF",
    )
    out = {k: v for k, v in env.items() if k in keep}
    out["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return out


async def _wait_healthy(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                r = await client.get(
                    f"{url}/_cluster/health", params={"wait_for_status": "yellow", "timeout": "5s"}
                )
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
    raise AssertionError(f"OpenSearch at {url} not healthy after {seconds}s")


async def _script(infra_dir: Path, *args: str) -> tuple[int, str, str]:
    env = os.environ | {"FAILCAT_INFRA_DIR": str(infra_dir)}
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(SCRIPT),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture(scope="module")
async def private_node() -> AsyncIterator[PrivateNode]:
    infra_dir = Path(f"/tmp/failcat-search-outage-{secrets.token_hex(3)}")
    rc, out, err = await _script(infra_dir, "start")
    if rc != 0 or not out.strip():
        backend_unavailable(
            f"could not start a private OpenSearch: {err.strip().splitlines()[-1:]}"
        )
    try:
        yield PrivateNode(infra_dir, out.strip().splitlines()[-1])
    finally:
        await _script(infra_dir, "stop")
        shutil.rmtree(infra_dir, ignore_errors=True)


async def _wait_for(check, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.mark.opensearch
async def test_indexer_catches_up_after_opensearch_returns(private_node, tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        search_url=private_node.url,
        search_index=f"failcat-t-outage-{secrets.token_hex(3)}",
        indexer_poll_s=0.05,
        indexer_batch=10,
    )
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    service = await SearchService.start(settings, db)
    indexer = asyncio.create_task(service.run_indexer())

    async def searchable(n: int) -> bool:
        try:
            await service.backend.refresh()
            return (await service.search(SYSTEM, "tags:outage", first=1)).total == n
        except Exception:
            return False

    async def ingest(start: int, count: int) -> None:
        for i in range(start, start + count):
            async with db.transaction() as s:
                await make_case(s, title=f"Outage case {i}", tags=["outage"])

    try:
        await ingest(0, 20)
        await _wait_for(lambda: searchable(20), 30)

        await private_node.stop()
        # Ingestion does not depend on the index: every write commits.
        await ingest(20, 30)
        await asyncio.sleep(1.0)  # the indexer tries, fails, backs off
        async with db.transaction() as s:
            assert await outbox_size(s) == 30  # nothing acknowledged, nothing lost
        assert not await service.ping()
        with pytest.raises(Unavailable):
            await service.search(SYSTEM, "outage")
        assert not indexer.done()  # the loop survives the outage

        await private_node.start_again()
        await _wait_for(lambda: searchable(50), 90)
        async with db.transaction() as s:
            assert await outbox_size(s) == 0
        assert await service.ping()
        assert (await service.verify()).in_sync
    finally:
        indexer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await indexer
        await service.close()
        await db.dispose()
