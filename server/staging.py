"""Where uploads wait while they are checked: apart from the content store.

An upload is written here, hashed, validated and its signature checked; only an
accepted one is committed into the blob store (``BlobStore.put_file`` moves it).
Every refusal and every cancelled stream removes the staged file, so a publisher
certificate without the targets key cannot fill the store with bytes listed
nowhere. A crash mid-upload can leave a file here: ``ota registry gc`` removes
staged files older than its grace period.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class Staging:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def file(self) -> Iterator[tuple[int, Path]]:
        """A new staged file (descriptor, path), removed on leaving unless committed (moved) already."""
        fd, name = tempfile.mkstemp(dir=self.root, suffix=".upload")
        path = Path(name)
        try:
            yield fd, path
        finally:
            path.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_file())

    def sweep(self, min_age_s: float, dry_run: bool = False) -> list[Path]:
        """Remove staged files older than ``min_age_s`` (left by a registry that died mid-upload)."""
        now = time.time()
        old = [p for p in self.files() if now - p.stat().st_mtime >= min_age_s]
        if not dry_run:
            for p in old:
                os.unlink(p)
        return old
