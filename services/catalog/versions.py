"""Ordering model versions: numeric parts compare as numbers ("3.10" is newer than "3.9")."""

from __future__ import annotations

import re

_PART = re.compile(r"\d+|[a-zA-Z]+")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in _PART.findall(version))


def is_newer(version: str, than: str | None) -> bool:
    return than is not None and version_key(version) > version_key(than)
