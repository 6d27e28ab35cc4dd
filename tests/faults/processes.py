"""`failcat serve` and `failcat worker` as real processes that a test can kill -9 and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def failcat_command() -> list[str]:
    """The installed `failcat` entry point of this interpreter's environment."""
    script = Path(sys.executable).parent / "failcat"
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.gateway.cli"]


@dataclass
class FailcatProcess:
    """One `failcat ARGS...` process; `kill()` is SIGKILL (no cleanup of any kind runs)."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    _log: object = field(default=None, repr=False)

    async def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("a")
        log.write(f"---- start {self.starts} ----\n")
        log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            *failcat_command(),
            *self.args,
            cwd=ROOT,
            env=os.environ | self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()  # the child holds its own descriptor

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass
class ApiProcess(FailcatProcess):
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await super().start()
        await self.wait_up(90)

    async def wait_up(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(f"failcat serve exited:\n{self.log_tail()}")
                try:
                    if (await client.get(f"{self.base_url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"failcat serve not up after {seconds} s:\n{self.log_tail()}")


def api_process(env: dict[str, str], log_dir: Path) -> ApiProcess:
    port = free_port()
    env = env | {"FAILCAT_ISSUER": f"http://127.0.0.1:{port}"}
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    return ApiProcess(args, env, log_dir / "serve.log", port=port)


def worker_process(env: dict[str, str], log_dir: Path) -> FailcatProcess:
    return FailcatProcess(["worker"], env, log_dir / "worker.log")


async def failcat_run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """A one-shot `failcat` command (db upgrade, search verify) in this environment."""
    proc = await asyncio.create_subprocess_exec(
        *failcat_command(),
        *args,
        cwd=ROOT,
        env=os.environ | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()
