"""The wire format of a captured case and of a context event (failcat's DESIGN.md).

`capture()` builds a plain dict in the caller's thread (no copying of `input`, no JSON); the
sender thread or task turns it into one JSON line. Lines are what batches, retries and the
spool carry, so a retried case is sent byte for byte as it was first sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import math
import random
import uuid
from collections.abc import Mapping
from typing import Any, Optional

KIND_CASE = 0
KIND_EVENT = 1

# A context event on the spool starts with this marker key (stripped before sending), so one
# spool holds both kinds in capture order and stays plain NDJSON.
EVENT_MARK = b'{"_failcat":"event",'


def model_ref(model: Any, version: Optional[str]) -> Any:
    """`model` as `{"name", "version"}` from a dict, a (name, version) pair or a name."""
    if isinstance(model, Mapping):
        ref = dict(model)
        if version is not None:
            ref.setdefault("version", version)
        return ref
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return {"name": model[0], "version": model[1]}
    if isinstance(model, str):
        return {"name": model, "version": version} if version is not None else {"name": model}
    return model


_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)
_bits = random.getrandbits


def new_external_id() -> str:
    """A random (version 4) UUID string, at a quarter of `str(uuid.uuid4())`'s cost: this
    runs in the caller's thread. `random` reseeds itself in forked children, so pre-forked
    workers do not repeat each other's ids; uniqueness, not secrecy, is what is needed."""
    h = "%032x" % (_bits(128) & _VERSION_MASK | _VERSION_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def iso(epoch_s: float) -> str:
    return (
        dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _default(value: Any) -> Any:
    """Common non-JSON values from serving code (numpy, pandas, dataclasses, pydantic)."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    for method in ("model_dump", "tolist", "to_dict", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    return repr(value)


def _finite(value: Any) -> Any:
    """NaN and infinities become null: the server's JSON parser refuses them, and one such
    float must not make the whole batch unreadable."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_default)
    except ValueError:
        text = json.dumps(
            _finite(json.loads(json.dumps(obj, default=_default))),
            separators=(",", ":"),
            allow_nan=False,
        )
    return text.encode("utf-8")


def encode(kind: int, fields: dict[str, Any], captured_s: float) -> bytes:
    """One JSON line (without the newline); `occurred_at` defaults to the capture time, so a
    case replayed from the spool hours later still says when it happened."""
    if fields.get("occurred_at") is None:
        fields["occurred_at"] = iso(captured_s)
    body = dumps(fields)
    if kind == KIND_EVENT:
        return EVENT_MARK + body[1:]
    return body


def is_event(line: bytes) -> bool:
    return line.startswith(EVENT_MARK)


def event_body(line: bytes) -> bytes:
    return b"{" + line[len(EVENT_MARK) :]


def json_array(lines: list[bytes]) -> bytes:
    return b"[" + b",".join(lines) + b"]"


def ndjson(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"
