"""The embedded blob store: a directory of files named by their sha256, written crash-safely."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelpack.fsio import fsync_dir
from server.storage.ports import BlobNotFound


class FileBlobStore:
    """Blobs as files named by their sha256 under ``root/ab/abcdef…``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise BlobNotFound(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def tempfile(self) -> tuple[int, Path]:
        """A scratch file on the same filesystem, for spooling uploads."""
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        return fd, Path(name)

    def put_file(self, src: Path, sha256: str) -> None:
        """Move a fully written, already hashed file into the store."""
        dest = self.path(sha256)
        dest.parent.mkdir(exist_ok=True)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        if dest.exists():
            os.unlink(src)
            return
        os.replace(src, dest)
        fsync_dir(dest.parent)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if self.exists(sha):
            return sha
        fd, tmp = self.tempfile()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.put_file(tmp, sha)
        return sha

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in the store at {self.root}") from None

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in the store at {self.root}") from None

    def exists(self, sha256: str) -> bool:
        try:
            return self.path(sha256).exists()
        except BlobNotFound:
            return False

    @property
    def quarantine_dir(self) -> Path:
        return self.root.parent / "quarantine"

    def quarantine(self, sha256: str) -> None:
        """Move a bad blob out of the store, beside it, for inspection (same filesystem: a rename)."""
        src = self.path(sha256)
        self.quarantine_dir.mkdir(exist_ok=True)
        try:
            os.replace(src, self.quarantine_dir / sha256)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in the store at {self.root}") from None
        fsync_dir(src.parent)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[tuple[str, int, float]]:
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or len(d.name) != 2:
                continue  # tmp/ and anything that is not a fan-out directory
            for f in sorted(d.iterdir()):
                if len(f.name) == 64 and f.name.startswith(d.name):
                    st = f.stat()
                    yield f.name, st.st_size, st.st_mtime
