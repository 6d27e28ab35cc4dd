"""`AsyncClient`: the same API for asyncio services (FastAPI, aiohttp).

`capture()` stays a plain (non-async) call: it only appends to the bounded deque. The sender
is a task on the caller's event loop using httpx.AsyncClient; JSON encoding and spool writes
(fsync) run in worker threads so the loop is never blocked by them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from typing import Any, Callable, Optional, TypeVar

from failcat_client._engine import Engine
from failcat_client._watch import Watch
from failcat_client.policy import PolicyFilter

log = logging.getLogger("failcat_client")

T = TypeVar("T")


class AsyncClient(PolicyFilter, Engine):
    """`async with AsyncClient(url, client_id, client_secret, spool_dir=...) as client:`
    then `client.capture(...)`, `await client.flush()`, `await client.close()`.

    The sender starts on the running loop at the first capture (or on `async with` /
    `await client.start()`). Capture policies apply exactly as in `Client` (the same
    `PolicyFilter` hooks on the sender: read before the first send and every
    `policy_refresh_s`, non-qualifying cases counted `filtered`; `capture_policies=False`
    turns it off).
    """

    def __init__(self, url: str, client_id: str, client_secret: str, **options: Any) -> None:
        policy_options = PolicyFilter.take_options(options)
        super().__init__(url, client_id, client_secret, **options)
        self._init_policies(**policy_options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[int] = None
        self._task: Optional[asyncio.Task[None]] = None
        ref = weakref.ref(self)
        self._atexit = lambda: _spill_at_exit(ref)
        atexit.register(self._atexit)

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def start(self) -> None:
        self._ensure_started()

    def _ensure_started(self) -> bool:
        if self._task is not None:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._wake_event = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._task = loop.create_task(self._run(self._wake_event, self._stop_event))
        return True

    def _put(self, kind: int, fields: dict[str, Any]) -> bool:
        if self._task is None:
            self._ensure_started()
        return super()._put(kind, fields)

    def _wake_sender(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._wake_event.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_event.set)

    async def flush(self, timeout: Optional[float] = None) -> bool:
        """As `Client.flush`, awaited."""
        if not self._ensure_started() or self._task is None or self._task.done():
            return self._pending() == 0
        self._probe_now = True
        self._wake_sender()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending() > 0:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self, timeout: Optional[float] = None) -> bool:
        """As `Client.close`, awaited."""
        if timeout is None:
            timeout = self.exit_timeout_s
        with self._lock:
            self._closed = True
        delivered = await self.flush(timeout)
        task = self._task
        if task is not None and not task.done():
            self._stop_event.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif task is None:
            self._spill()
        self._close_spool()
        atexit.unregister(self._atexit)
        return delivered

    aclose = close

    def watch(self, **options: Any) -> Watch:
        """As `Client.watch`; decorates coroutine functions too."""
        return Watch(self, **options)

    async def __aenter__(self) -> AsyncClient:
        self._ensure_started()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _spill_at_exit(ref: weakref.ref[AsyncClient]) -> None:
    """At exit the loop is gone (asyncio.run cancelled the sender, whose `finally` spilled
    what it held); whatever is left in memory goes to the spool here."""
    client = ref()
    if client is not None:
        client._spill()
        client._close_spool()
