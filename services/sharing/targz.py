"""A bundle's tar.gz, compressed while the export writes it.

gzip allows a file of several members, read as the concatenation of their contents (RFC
1952 2.2; Python's gzip and tarfile, GNU tar and zcat all do). So each JSON-lines file is
compressed as its own gzip member while its lines are written, by one worker thread (zlib
lets go of the GIL), and the archive is put together at the end: tar headers and padding as
small members of their own, the files' members copied as they are. The export's thread
meanwhile reads and renders the next rows, and no file is compressed a second time.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# Measured on a bundle's JSON lines: level 6 (gzip's default) costs 28 us of CPU per case,
# level 3 13 us for 16% more bytes, level 1 11 us for 29% more; tarfile's 9 three times 6.
COMPRESS_LEVEL = 3
GZIP = 31  # zlib's wbits for a gzip member (header and trailer)
CHUNK = 1 << 20  # bytes handed to the worker at a time
IN_FLIGHT = 4  # chunks a file may have queued (bounded memory: the writer waits)


class MemberWriter:
    """A JSON-lines member: sha256 of its lines, their count and size, and its gzip member in
    `path` (hashed and written by the worker)."""

    def __init__(self, path: Path, pool: ThreadPoolExecutor) -> None:
        self.path = path
        self.fh = path.open("wb")
        self.sha = hashlib.sha256()
        self.count = 0
        self.size = 0
        self._z = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, GZIP)
        self._pool = pool
        self._buf: list[bytes] = []
        self._buffered = 0
        self._queued: deque[Future[None]] = deque()

    def write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        self._buf.append(line)
        self._buffered += len(line)
        self.size += len(line)
        self.count += 1
        if self._buffered >= CHUNK:
            self._hand_over()

    def _hand_over(self, final: bool = False) -> None:
        data = b"".join(self._buf)
        self._buf, self._buffered = [], 0
        while len(self._queued) >= IN_FLIGHT:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self._compress, data, final))

    def _compress(self, data: bytes, final: bool) -> None:  # in the worker
        # Hashed here too: the worker takes the chunks in order (one thread), and sha256 lets
        # go of the GIL over a chunk as zlib does.
        self.sha.update(data)
        out = self._z.compress(data)
        if final:
            out += self._z.flush()
        self.fh.write(out)

    def close(self) -> str:
        """Finish the member (waits for the worker); the lines' sha256."""
        if not self.fh.closed:
            self._hand_over(final=True)
            while self._queued:
                self._queued.popleft().result()
            self.fh.close()
        return self.sha.hexdigest()

    def abandon(self) -> None:
        """Close the file of an export that failed (once the worker has stopped)."""
        if not self.fh.closed:
            self.fh.close()


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def pack(
    out: Path, first: list[tuple[str, bytes]], members: list[tuple[str, MemberWriter]]
) -> None:
    """Write the tar.gz: the small `first` files (name, bytes), then the closed members."""
    mtime = int(datetime.now(UTC).timestamp())
    length = 0
    with out.open("wb") as fh:
        head = bytearray()
        for name, data in first:
            head += _header(name, len(data), mtime) + data + _pad(len(data))
        for name, member in members:
            head += _header(name, member.size, mtime)
            fh.write(zlib.compress(bytes(head), COMPRESS_LEVEL, GZIP))
            length += len(head)
            with member.path.open("rb") as src:
                shutil.copyfileobj(src, fh)
            length += member.size
            head = bytearray(_pad(member.size))
        head += b"\0" * (2 * tarfile.BLOCKSIZE)  # end of archive
        head += b"\0" * (-(length + len(head)) % tarfile.RECORDSIZE)
        fh.write(zlib.compress(bytes(head), COMPRESS_LEVEL, GZIP))
