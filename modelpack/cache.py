"""The on-disk cache for generated models (``$OTA_CACHE`` or ``~/.cache/squeeze-ota``).

Generated models are never committed: they are built on demand and kept here,
written atomically with a sidecar recording their length and sha256, so a
truncated or altered entry is rebuilt instead of used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from modelpack.fsio import atomic_write_bytes

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    root = os.environ.get("OTA_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "squeeze-ota"


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename + directory fsync: readers never see half a file."""
    atomic_write_bytes(path, data)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def is_valid(path: Path) -> bool:
    """True when ``path`` and its sidecar agree (length and sha256)."""
    side = _sidecar(path)
    if not path.is_file() or not side.is_file():
        return False
    try:
        meta = json.loads(side.read_text())
        if path.stat().st_size != meta["size"]:
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def store(path: Path, data: bytes, **facts: object) -> Path:
    write_atomically(path, data)
    meta = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **facts}
    write_atomically(_sidecar(path), json.dumps(meta, sort_keys=True).encode())
    return path


def cached(relpath: str, build: Callable[[], bytes], *, root: Path | None = None) -> Path:
    """The cached file at ``relpath``, built with ``build`` if absent or damaged."""
    path = (root or cache_dir()) / relpath
    if is_valid(path):
        return path
    log.info("building %s into the cache", relpath)
    return store(path, build())
