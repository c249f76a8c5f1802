"""Parsed TUF metadata by content: a check-in re-reads the same signed files over and over.

Parsing a signed file (JSON, dates, keys) costs far more than fetching its bytes,
and a version never changes once signed. What ``parsed`` returns is shared by
every caller: read it, never change it (``SignedRepository.latest`` parses a
private copy for the signing paths that do).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from tuf.api.metadata import Metadata

PARSED_MAX = 512  # a few per vehicle chain in flight, and every image role


class _ParseCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[bytes, Metadata[Any]] = OrderedDict()

    def get(self, data: bytes) -> Metadata[Any]:
        with self._lock:
            md = self._items.get(data)
            if md is not None:
                self._items.move_to_end(data)
                return md
        md = Metadata.from_bytes(data)
        with self._lock:
            self._items[data] = md
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return md


_CACHE = _ParseCache(PARSED_MAX)


def parsed(data: bytes) -> Metadata[Any]:
    """``Metadata.from_bytes(data)``, once per distinct content (bounded, least recently used out)."""
    return _CACHE.get(data)
