"""A bounded disk spool: what could not be delivered waits here, in capture order, across
process restarts.

Layout of the directory: append-only segment files `<seq>.ndjson` (one JSON line per case or
event, fsync'd per appended batch), a `cursor` file (`<seq> <byte offset>`: how far the oldest
segment has been delivered), and a `lock` file held with flock so two live clients never
share a spool. When a new batch would exceed `max_bytes`, whole segments are dropped oldest
first and the lines they still held are counted as dropped.

Not thread-safe: one sender owns it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

try:  # POSIX; elsewhere the spool works without the cross-process guard.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".ndjson"


class SpoolLocked(RuntimeError):
    """Another live client holds this spool directory."""


class Spool:
    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, segment_bytes: Optional[int] = None
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("spool max_bytes must be positive")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        # Dropping is per segment: small segments keep the loss on overflow close to the excess.
        self.segment_bytes = segment_bytes or max(4096, min(max_bytes // 16, 4 * 1024 * 1024))
        self._lock_file = open(self.dir / "lock", "a+b")  # noqa: SIM115 - held for the lifetime
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock_file.close()
                raise SpoolLocked(f"spool {self.dir} is in use by another client") from None
        self._segments: list[int] = []
        self._sizes: dict[int, int] = {}
        self._lines: dict[int, int] = {}  # lines not yet delivered, per segment
        self._head_offset = 0
        self._last_seq = 0
        self._pending = 0  # a plain int: other threads read it without a lock
        self.last_dropped = 0
        self._load()

    # ---- state ---------------------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{SUFFIX}"

    def _load(self) -> None:
        seqs = []
        for path in self.dir.glob(f"*{SUFFIX}"):
            stem = path.name[: -len(SUFFIX)]
            if stem.isdigit():
                seqs.append(int(stem))
        self._segments = sorted(seqs)
        head_seq, offset = self._read_cursor()
        self._last_seq = max([head_seq, *self._segments, 0])
        for seq in self._segments:
            data = self._path(seq).read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut != len(data):
                # A torn write from a crash: that batch was never acknowledged as spooled.
                with open(self._path(seq), "r+b") as fh:
                    fh.truncate(cut)
                data = data[:cut]
            start = offset if seq == head_seq and seq == self._segments[0] else 0
            start = min(start, len(data))
            self._sizes[seq] = len(data)
            self._lines[seq] = data.count(b"\n", start)
        self._pending = sum(self._lines.values())
        if self._segments and head_seq == self._segments[0]:
            self._head_offset = min(offset, self._sizes[head_seq])

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seq, offset = (self.dir / "cursor").read_text().split()
            return int(seq), int(offset)
        except (OSError, ValueError):
            return -1, 0

    def _write_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        seq = self._segments[0] if self._segments else -1
        tmp.write_text(f"{seq} {self._head_offset}")
        os.replace(tmp, self.dir / "cursor")

    @property
    def pending(self) -> int:
        """Lines spooled and not yet delivered."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        return sum(self._sizes.values()) - self._head_offset

    # ---- writing -------------------------------------------------------------------------
    def append(self, lines: list[bytes]) -> int:
        """Append a batch durably; returns how many lines were dropped to make room (older
        lines first, then, if the batch alone is over the limit, its own oldest lines)."""
        if not lines:
            return 0
        dropped = 0
        size = sum(len(line) + 1 for line in lines)
        while size > self.max_bytes and lines:
            size -= len(lines[0]) + 1
            lines = lines[1:]
            dropped += 1
        while self._segments and self.pending_bytes + size > self.max_bytes:
            dropped += self._remove_head()
        self.last_dropped = dropped  # also known to the caller if the write below fails
        if not lines:
            return dropped
        if not self._segments or self._sizes[self._segments[-1]] >= self.segment_bytes:
            self._last_seq += 1
            seq = self._last_seq
            self._segments.append(seq)
            self._sizes[seq] = 0
            self._lines[seq] = 0
        tail = self._segments[-1]
        data = b"".join(line + b"\n" for line in lines)
        with open(self._path(tail), "ab") as fh:
            try:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                # Disk full mid-write: cut the partial batch so the segment stays whole lines.
                with contextlib.suppress(OSError):
                    fh.truncate(self._sizes[tail])
                raise
        self._sizes[tail] += len(data)
        self._lines[tail] += len(lines)
        self._pending += len(lines)
        return dropped

    def _remove_head(self) -> int:
        """Forget the oldest segment; returns its undelivered lines. The cursor moves first, so
        a crash in between re-sends delivered lines (answered `duplicate`), never skips any."""
        seq = self._segments.pop(0)
        lost = self._lines.pop(seq)
        self._pending -= lost
        self._sizes.pop(seq)
        self._head_offset = 0
        self._write_cursor()
        self._path(seq).unlink(missing_ok=True)
        return lost

    # ---- reading -------------------------------------------------------------------------
    def peek(self, max_items: int, max_bytes: int) -> tuple[list[bytes], int]:
        """The oldest undelivered lines (at least one when any), and the position to
        `commit` once they are delivered."""
        while self._segments:
            head = self._segments[0]
            if self._head_offset < self._sizes[head]:
                break
            if len(self._segments) == 1:
                return [], 0
            self._remove_head()
        if not self._segments:
            return [], 0
        head = self._segments[0]
        lines: list[bytes] = []
        taken = 0
        pos = self._head_offset
        with open(self._path(head), "rb") as fh:
            fh.seek(pos)
            for raw in fh:
                if lines and (len(lines) >= max_items or taken + len(raw) > max_bytes):
                    break
                lines.append(raw.rstrip(b"\n"))
                taken += len(raw)
        return lines, pos + taken

    def commit(self, position: int, count: int) -> None:
        """Mark the lines up to `position` of the oldest segment as delivered."""
        head = self._segments[0]
        self._head_offset = position
        self._lines[head] -= count
        self._pending -= count
        if position >= self._sizes[head]:
            self._remove_head()
        else:
            self._write_cursor()

    def close(self) -> None:
        if not self._lock_file.closed:
            self._lock_file.close()
