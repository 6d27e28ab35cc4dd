"""`Client`: capture from threaded code (WSGI apps, batch jobs, notebooks).

The sender is the shared asyncio coroutine, run on a private event loop in one daemon thread:
the caller's thread only appends to a bounded deque.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import threading
import time
import weakref
from typing import Any, Optional

import httpx

from failcat_client._engine import Engine
from failcat_client._watch import Watch
from failcat_client.policy import PolicyFilter

log = logging.getLogger("failcat_client")


class Client(PolicyFilter, Engine):
    """Capture failure cases to a failcat server without slowing the caller.

    >>> client = Client("https://failcat.example", client_id, client_secret,
    ...                 spool_dir="/var/spool/failcat")
    >>> client.capture(model={"name": "fraud", "version": "3.2.0"},
    ...                data_source="payments", input=features, prediction=label,
    ...                confidence=0.31)

    See `Engine.__init__` for the tuning knobs (queue size, batch size and interval, retries,
    spool size). Flushed and closed at interpreter exit. The capture policy of each (model,
    data source) is read from the server and applied before sending (`failcat_client.policy`;
    `capture_policies=False` turns that off, `policy_refresh_s` sets how often it is read).
    """

    def __init__(self, url: str, client_id: str, client_secret: str, **options: Any) -> None:
        policy_options = PolicyFilter.take_options(options)
        super().__init__(url, client_id, client_secret, **options)
        self._init_policies(**policy_options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._progress = threading.Condition()
        self._ready = threading.Event()
        _import_http_stack()
        # Made here, not by the sender: a fork while the sender thread is inside OpenSSL's
        # SSL_CTX_new leaves OpenSSL's locks held in the child, whose new sender then hangs
        # for good making its own context. The child reuses this finished one instead.
        self._verify = httpx.create_ssl_context(verify=self._verify)
        self._start_sender()
        _LIVE.add(self)
        # A weak reference: registering the bound method would keep every client alive.
        ref = weakref.ref(self)
        self._atexit = lambda: _close_at_exit(ref)
        atexit.register(self._atexit)

    def _start_sender(self) -> None:
        self._thread = threading.Thread(
            target=self._thread_main, name="failcat-client-sender", daemon=True
        )
        self._thread.start()
        self._ready.wait(5)

    def _after_fork_in_child(self) -> None:
        """A pre-forking server (gunicorn --preload) copied this client into a worker: the
        sender thread did not come along and locks may be held by it. Start afresh, without
        the parent's queue (the parent delivers it) and without its spool (one live client
        per spool directory)."""
        self._lock = threading.Lock()
        self._progress = threading.Condition()
        self._ready = threading.Event()
        self._queue.clear()
        self._inflight = []
        self._inflight_items = 0
        self._counts = dict.fromkeys(self._counts, 0)
        self._loop = None
        self._wake_pending = False
        if self._spool is not None:
            log.warning(
                "failcat Client created before fork: the worker runs without the spool "
                "(create the Client after fork, e.g. in gunicorn's post_fork, to keep it)"
            )
            self._spool = None
        if not self._closed:
            self._start_sender()

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._wake_event = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._task = loop.create_task(self._run(self._wake_event, self._stop_event))
        self._ready.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug in the sender must not take the process down
            log.exception("failcat sender stopped")
        finally:
            loop.close()
            self._close_spool()
            self._notify()

    def _wake_sender(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed in between (the client is shutting down).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_event.set)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until nothing captured so far is pending (each case stored, answered
        invalid / sampled out, or dropped: `stats()` tells which); True if that happened
        within `timeout` seconds. A server that is down is offered the spool once more at
        once, without waiting for the backoff."""
        if not self._thread.is_alive():
            return self._pending() == 0
        if threading.current_thread() is self._thread:
            return False
        self._probe_now = True
        self._wake_sender()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            while self._pending() > 0:
                remaining = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush (up to `timeout`, default `exit_timeout_s`), then stop the sender; what is
        still undelivered is written to the spool (or counted dropped without one).
        Captures after close are dropped. True if everything was delivered."""
        if timeout is None:
            timeout = self.exit_timeout_s
        with self._lock:
            already = self._closed
            self._closed = True
        if already and not self._thread.is_alive():
            return self._pending() == 0
        delivered = self.flush(timeout)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
                loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass
        self._thread.join(max(1.0, timeout))
        atexit.unregister(self._atexit)
        return delivered

    def watch(self, **options: Any) -> Watch:
        """A decorator or context manager capturing exceptions and low-confidence results
        of a model call (see `failcat_client.Watch`)."""
        return Watch(self, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()

# What httpx imports lazily: httpcore when the transport is made, the SSL roots with the
# context, the anyio backend at the first connection.
_HTTP_STACK = (
    "httpcore",
    "certifi",
    "sniffio",
    "anyio._backends._asyncio",
    "httpcore._backends.anyio",
)


def _import_http_stack() -> None:
    """Import in the caller's thread what the sender would otherwise import on its first
    request. A fork (gunicorn --preload) while the sender thread is half way through such an
    import leaves the child a partially initialized module in `sys.modules` (the importing
    thread does not exist there, so nobody finishes it): the child's sender then dies with
    "partially initialized module 'httpcore' has no attribute ..." and its cases never leave.
    Missing modules are skipped: httpx then does without them (or is an older version that
    imported them itself)."""
    for name in _HTTP_STACK:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _reset_after_fork() -> None:
    for client in list(_LIVE):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)


def _close_at_exit(ref: weakref.ref[Client]) -> None:
    client = ref()
    if client is not None:
        client.close()
