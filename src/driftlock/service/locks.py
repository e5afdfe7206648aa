"""Per-stream locks that hold across the processes of one machine (for SQLite).

One lock file, ``SLOTS`` byte-range locks in it; a stream takes the slot its name hashes to (two
streams sharing a slot only wait for each other). POSIX record locks belong to a process, so a
thread lock per slot keeps the process's own threads apart, and the record lock the processes. The
kernel releases a dead process's locks, so a ``kill -9`` never leaves a stream locked. The file is
opened once and never closed while in use: closing any descriptor of it would drop the process's
locks.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["StreamLocks"]

SLOTS = 4096


class StreamLocks:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._threads = [threading.Lock() for _ in range(SLOTS)]

    @staticmethod
    def slot(stream_id: str) -> int:
        digest = hashlib.blake2b(stream_id.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return int.from_bytes(digest, "big") % SLOTS

    @contextmanager
    def hold(self, stream_id: str) -> Iterator[None]:
        slot = self.slot(stream_id)
        with self._threads[slot]:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, slot)  # blocks without the GIL
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot)

    def close(self) -> None:
        os.close(self._fd)
