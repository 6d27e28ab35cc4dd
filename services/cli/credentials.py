"""The per-user cache of `failcat login` tokens, one entry per server URL (as `gh` keeps them).

$XDG_CONFIG_HOME/failcat/credentials.json (default ~/.config/failcat/credentials.json), mode
0600 in a 0700 directory, replaced atomically so a crash never leaves half a file. It holds a
refresh token: anyone who can read it acts as the person who signed in, until `failcat logout`
or the token's revocation.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.cli.errors import CliError


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "failcat" / "credentials.json"


def load_all() -> dict[str, dict[str, Any]]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"{path}: unreadable credentials ({exc}); run `failcat logout`") from None
    return data if isinstance(data, dict) else {}


def load(url: str) -> dict[str, Any] | None:
    return load_all().get(url)


def save(url: str, entry: dict[str, Any] | None) -> None:
    """Store (or with None, forget) the entry for `url`."""
    path = credentials_path()
    data = load_all()
    if entry is None:
        if url not in data:
            return
        del data[url]
    else:
        data[url] = entry
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


@contextmanager
def locked() -> Iterator[None]:
    """Hold while refreshing: refresh tokens rotate and a reused one ends the whole sign-in,
    so two commands started together must not both spend the same one."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
