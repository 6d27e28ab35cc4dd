"""Private Postgres and OpenSearch that a test may stop and start again.

The shared backends of backends.env (or `make test`) must never be stopped: other sessions use
them. These are started by the project's own scripts (infra/scripts/{postgres,opensearch}.sh)
with a private FAILCAT_INFRA_DIR, so they get their own ports and data directories and run as
the same unprivileged user. Stopping and starting again happens below the scripts (their
`start` wipes the state): `pg_ctl stop/start` on the same data directory, and OpenSearch's own
launcher with the environment the script gave the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "scripts"


class InfraUnavailable(RuntimeError):
    """A private backend could not be started (the caller decides: fail in CI, else skip)."""


def _as_infra_user(cmd: list[str]) -> list[str]:
    # Same rule as lib.sh's as_user: initdb/postgres and OpenSearch refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", os.environ.get("FAILCAT_INFRA_USER", "failcat"), "--", *cmd]
    return cmd


async def _run(
    cmd: list[str], env: dict[str, str] | None = None, capture: bool = True
) -> tuple[int, str, str]:
    """capture=False for a command that leaves a daemon behind: the daemon would inherit the
    pipes and keep them open, and reading them to the end would never return."""
    out_to = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd="/", stdin=asyncio.subprocess.DEVNULL, stdout=out_to, stderr=out_to
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, (out or b"").decode(), (err or b"").decode()


async def _script(infra_dir: Path, name: str, action: str) -> str:
    # Half the default heap: the node holds one small index, and a JVM that pre-touches 1 GB
    # starts (and restarts, mid-test) seconds later on a busy machine.
    env = os.environ | {
        "FAILCAT_INFRA_DIR": str(infra_dir),
        "FAILCAT_OPENSEARCH_HEAP": "512m",
        "FAILCAT_OPENSEARCH_TIMEOUT": "300",  # a busy CI machine is slower than a laptop
    }
    rc, out, err = await _run(["bash", str(SCRIPTS / f"{name}.sh"), action], env)
    if rc != 0 or (action == "start" and not out.strip()):
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise InfraUnavailable(f"{name}.sh {action} failed: {last}")
    return out.strip().splitlines()[-1] if out.strip() else ""


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@dataclass
class PrivatePostgres:
    infra_dir: Path
    url: str = ""

    @property
    def data(self) -> Path:
        return self.infra_dir / "postgres" / "data"

    def _pg_ctl(self) -> str:
        bins = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
        if not bins:
            raise InfraUnavailable("no /usr/lib/postgresql/*/bin/pg_ctl")
        return str(bins[-1])

    async def start(self) -> str:
        self.url = await _script(self.infra_dir, "postgres", "start")
        # The script turns synchronous_commit off (test data only). A stop here must not
        # drop a transaction the API already acknowledged, or the test would blame failcat.
        conf = self.data / "postgresql.auto.conf"
        text = conf.read_text().replace("synchronous_commit = off", "synchronous_commit = on")
        conf.write_text(text)
        await self._ctl("reload")
        return self.url

    async def _ctl(self, *args: str) -> None:
        log = self.infra_dir / "postgres" / "postgres.log"
        cmd = [self._pg_ctl(), "-D", str(self.data), "-l", str(log), "-w", "-t", "60", *args]
        rc, out, err = await _run(_as_infra_user(cmd))
        if rc != 0:
            raise AssertionError(f"pg_ctl {' '.join(args)} failed: {err or out}")

    async def stop(self) -> None:
        """A fast shutdown: open transactions are rolled back, clients are disconnected."""
        await self._ctl("-m", "fast", "stop")

    async def start_again(self) -> None:
        await self._ctl("start")

    async def teardown(self) -> None:
        await _script(self.infra_dir, "postgres", "stop")


@dataclass
class PrivateOpenSearch:
    infra_dir: Path
    url: str = ""
    _launch_env: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.infra_dir / "opensearch"

    def pid(self) -> int:
        return int((self.state / "opensearch.pid").read_text().strip())

    async def start(self) -> str:
        self.url = await _script(self.infra_dir, "opensearch", "start")
        self._launch_env = _node_env(self.pid())
        return self.url

    async def stop(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid):
            if time.monotonic() > deadline:
                raise AssertionError("private OpenSearch did not stop within 60 s")
            await asyncio.sleep(0.2)

    async def start_again(self, wait: bool = True) -> None:
        home = next(self.state.glob("opensearch-*"))
        pid_file = self.state / "opensearch.pid"
        cmd = [str(home / "bin" / "opensearch"), "-d", "-p", str(pid_file)]
        env = self._launch_env | {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        rc, _, _ = await _run(_as_infra_user(cmd), env, capture=False)
        if rc != 0:
            raise AssertionError(f"OpenSearch did not launch again (exit {rc}, see {self.state})")
        if wait:
            await self.wait_healthy(180)

    async def wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    r = await client.get(
                        f"{self.url}/_cluster/health",
                        params={"wait_for_status": "yellow", "timeout": "3s"},
                    )
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        raise AssertionError(f"OpenSearch at {self.url} not healthy after {seconds} s")

    async def teardown(self) -> None:
        await _script(self.infra_dir, "opensearch", "stop")


def _node_env(pid: int) -> dict[str, str]:
    """The JDK, heap and paths the script launched the node with, to launch it the same way."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    keep = (
        "JAVA_HOME",
        "OPENSEARCH_JAVA_HOME",
        "OPENSEARCH_JAVA_OPTS",
        "OPENSEARCH_TMPDIR",
        "OPENSEARCH_PATH_CONF",
    )
    return {k: v for k, v in env.items() if k in keep}


@dataclass
class PrivateBackends:
    """Both private backends under one FAILCAT_INFRA_DIR, started concurrently."""

    infra_dir: Path
    postgres: PrivatePostgres = field(init=False)
    opensearch: PrivateOpenSearch = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = PrivatePostgres(self.infra_dir)
        self.opensearch = PrivateOpenSearch(self.infra_dir)

    async def start(self) -> None:
        results = await asyncio.gather(
            self.postgres.start(), self.opensearch.start(), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.teardown()
            raise failed[0]

    async def teardown(self) -> None:
        for backend in (self.opensearch, self.postgres):
            # Best effort (it may never have started): the directory goes below anyway.
            with contextlib.suppress(InfraUnavailable):
                await backend.teardown()
        shutil.rmtree(self.infra_dir, ignore_errors=True)
