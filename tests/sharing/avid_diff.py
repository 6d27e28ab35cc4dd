"""The AVID round trip's comparison: every field services/sharing/avid.py says failcat models,
and the fields a report has that it does not."""

from __future__ import annotations

from typing import Any

from services.governance.redaction.service import mask_text
from services.sharing.avid import MODELLED, SET_VALUED

MISSING = object()


def at(report: dict[str, Any], path: str) -> Any:
    value: Any = report
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def leaf_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and value:
        out: set[str] = set()
        for k, v in value.items():
            out |= leaf_paths(v, f"{prefix}.{k}" if prefix else k)
        return out
    return {prefix}


def covered(path: str) -> bool:
    return any(path == m or path.startswith(m + ".") for m in MODELLED)


def differences(
    original: dict[str, Any], exported: dict[str, Any], masked: list[str] | None = None
) -> list[str]:
    """The modelled fields that differ. Text stored through ingest passed the default PII
    redaction: a field equal to the original with its findings masked is kept as the
    catalog keeps it, not lost (its path is appended to `masked`)."""
    out = []
    for path in MODELLED:
        a, b = at(original, path), at(exported, path)
        if path in SET_VALUED and isinstance(a, list) and isinstance(b, list):
            a, b = sorted(set(a)), sorted(set(b))
        if a != b and isinstance(a, str) and mask_text(a) == b:
            if masked is not None:
                masked.append(path)
            continue
        if a != b:
            out.append(f"{path}: {a!r} != {b!r}"[:400])
    return out


def not_modelled(original: dict[str, Any]) -> set[str]:
    return {p for p in leaf_paths(original) if not covered(p)}
