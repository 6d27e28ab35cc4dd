"""What the browser tests share besides fixtures (those are in conftest.py): where chromium
is, how it is started, the served app's handle."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import backend_unavailable

CHROMIUM = os.environ.get("FAILCAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    base: str
    app: Any
    requests: list[str] = field(default_factory=list)


def chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not found:
        backend_unavailable(f"chromium is not installed at {CHROMIUM}: apt-get install -y chromium")
    return found
