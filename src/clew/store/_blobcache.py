"""A bounded cache of checked blob plaintexts, by run and address, shared by the loads of one store.

Blobs are immutable and named by their content, so a plaintext read once and checked
against its address stays right for as long as the run holds that blob: a later load
of the same run (the next head, an older checkpoint, a branch compared with another)
reads it from here instead of fetching, decompressing and hashing it again. Only
bytes read from the database and checked go in; a run's entries are dropped when the
run is deleted. Least recently used entries go first once ``max_bytes`` is reached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from clew.codec._envelope import Plain


class BlobCache:
    """Plaintexts by ``(run key, address)``, at most ``max_bytes`` of them (0 disables)."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, bytes], Plain] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get_many(self, rk: int, addrs: Iterable[bytes]) -> dict[bytes, Plain]:
        found: dict[bytes, Plain] = {}
        if not self.max_bytes:
            return found
        with self._lock:
            for addr in addrs:
                plain = self._entries.get((rk, addr))
                if plain is not None:
                    self._entries.move_to_end((rk, addr))
                    found[addr] = plain
        return found

    def put_many(self, rk: int, plains: dict[bytes, Plain]) -> None:
        if not self.max_bytes:
            return
        with self._lock:
            for addr, plain in plains.items():
                if len(plain) > self.max_bytes // 8:
                    continue  # one huge blob would push out everything else
                key = (rk, addr)
                if key in self._entries:
                    continue
                self._entries[key] = plain
                self._size += len(plain)
            while self._size > self.max_bytes:
                _, plain = self._entries.popitem(last=False)
                self._size -= len(plain)

    def drop_run(self, rk: int) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == rk]:
                self._size -= len(self._entries.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0
