"""Webhook receivers on 127.0.0.1 (a thread each, a free port), tokens, and the fast retry
policy the app's sender uses in these tests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# Fast enough for a test, slow enough to see the backoff grow between attempts.
FAST = {
    "max_attempts": 3,
    "base_delay_s": 0.05,
    "max_delay_s": 0.2,
    "timeout_s": 0.5,
    "poll_s": 0.02,
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers its requests with `script` in turn (status, JSON body), then 200 {}."""

    url: str
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)


def _serve(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.received.append(Received(dict(self.headers.items()), body))
            status, answer = receiver.script.pop(0) if receiver.script else (200, {})
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(url="")
    server = _serve(made)
    made.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel completes them into the backlog) and
    never answers: every request times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/never"
    finally:
        sock.close()


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/refused"


@pytest.fixture
def fast_sender(app: Any) -> Iterator[Any]:
    dispatcher = app.state.escalation
    before = dispatcher.policy
    dispatcher.with_policy(**FAST)
    try:
        yield dispatcher
    finally:
        dispatcher.policy = before


@pytest.fixture(scope="module")
async def tokens(token_for: Any) -> dict[str, str]:
    return {
        "curator": await token_for(
            "cases:ingest cases:write cases:read", team="fraud-ml", clearance="restricted"
        ),
        "ingest": await token_for("cases:ingest", clearance="restricted"),
        "reviewer": await token_for("reviews:write cases:read", clearance="restricted"),
        "other_team": await token_for("cases:write cases:read", team="elsewhere"),
        "viewer": await token_for("cases:read", clearance="restricted"),
    }
