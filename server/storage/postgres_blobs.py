"""``BlobStore`` on PostgreSQL: blobs in 256 KiB chunk rows, verified on the way in.

Models are a few MB, so one backup covers the whole registry, a blob and the rows
that refer to it commit together, and a resumed download reads only the chunks it needs.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from otawire.constants import CHUNK_SIZE
from server.storage.ports import BlobNotFound, StorageError
from server.storage.postgres_db import PgDatabase

BLOB_CHUNK = CHUNK_SIZE  # a served Download message (MESSAGE_BYTES) is a slice of one row


class PgBlobStore:
    """``BlobStore`` on PostgreSQL: content-addressed, chunked, verified on the way in."""

    def __init__(self, db: PgDatabase, spool_dir: Path | None = None) -> None:
        self.db = db
        self.spool_dir = (
            Path(spool_dir) if spool_dir else Path(tempfile.gettempdir()) / "ota-registry-spool"
        )
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    def tempfile(self) -> tuple[int, Path]:
        """A local scratch file for spooling an upload before it is checked."""
        fd, name = tempfile.mkstemp(dir=self.spool_dir, suffix=".part")
        return fd, Path(name)

    def put_file(self, src: Path, sha256: str) -> None:
        """Store a spooled file under its sha256 (checked), then remove the file."""
        with open(src, "rb") as f:
            self._put_stream(f, sha256, where=str(src))
        os.unlink(src)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._put_stream(io.BytesIO(data), sha, where="bytes")
        return sha

    def _put_stream(self, f: BinaryIO, sha256: str, where: str) -> None:
        _check_digest(sha256)
        if self.exists(sha256):
            return
        h = hashlib.sha256()
        length = 0
        # One transaction: a crash leaves no half blob behind, and a replica
        # storing the same blob at the same time waits, then finds it there.
        with self.db.tx() as c:
            idx = 0
            while chunk := f.read(BLOB_CHUNK):
                h.update(chunk)
                c.execute(
                    "INSERT INTO blob_chunks (sha256, idx, data) VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                    (sha256, idx, chunk),
                )
                length += len(chunk)
                idx += 1
            if h.hexdigest() != sha256:
                raise StorageError(
                    f"{where}: content hashes to {h.hexdigest()}, not the claimed {sha256}; not stored"
                )
            c.execute(
                "INSERT INTO blobs (sha256, length, chunk_size) VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                (sha256, length, BLOB_CHUNK),
            )

    def _meta(self, sha256: str) -> tuple[int, int]:
        _check_digest(sha256)
        with self.db.conn() as c:
            row = c.execute(
                "SELECT length, chunk_size FROM blobs WHERE sha256=%s", (sha256,)
            ).fetchone()
        if row is None:
            raise BlobNotFound(
                f"blob {sha256} is not in the PostgreSQL store (schema {self.db.schema})"
            )
        return int(row[0]), int(row[1])

    def open(self, sha256: str) -> BinaryIO:
        length, chunk_size = self._meta(sha256)
        return io.BufferedReader(
            _PgBlobReader(self.db, sha256, length, chunk_size), buffer_size=chunk_size
        )

    def size(self, sha256: str) -> int:
        return self._meta(sha256)[0]

    def exists(self, sha256: str) -> bool:
        try:
            self._meta(sha256)
        except BlobNotFound:
            return False
        return True

    def quarantine(self, sha256: str) -> None:
        """A database has no place aside: the bad rows are deleted (publishing the file again restores it)."""
        if not self.exists(sha256):
            raise BlobNotFound(
                f"blob {sha256} is not in the PostgreSQL store (schema {self.db.schema})"
            )
        self.delete(sha256)

    def delete(self, sha256: str) -> None:
        _check_digest(sha256)
        with self.db.tx() as c:
            c.execute("DELETE FROM blobs WHERE sha256=%s", (sha256,))
            c.execute("DELETE FROM blob_chunks WHERE sha256=%s", (sha256,))

    def list_blobs(self) -> Iterator[tuple[str, int, float]]:
        with self.db.conn() as c:
            rows = c.execute(
                "SELECT sha256, length, extract(epoch FROM stored_at) FROM blobs ORDER BY sha256"
            ).fetchall()
        for sha, length, at in rows:
            yield str(sha), int(length), float(at)


def _check_digest(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BlobNotFound(f"not a sha256 digest: {sha256!r}")


class _PgBlobReader(io.RawIOBase):
    """A seekable read-only file over a blob's chunk rows; reads only what is asked."""

    def __init__(self, db: PgDatabase, sha256: str, length: int, chunk_size: int) -> None:
        self._db, self._sha, self._len, self._chunk = db, sha256, length, chunk_size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buf: Any) -> int:
        want = min(len(buf), self._len - self._pos)
        if want <= 0:
            return 0
        first, last = self._pos // self._chunk, (self._pos + want - 1) // self._chunk
        with self._db.conn() as c:
            rows = c.execute(
                "SELECT idx, data FROM blob_chunks WHERE sha256=%s AND idx BETWEEN %s AND %s ORDER BY idx",
                (self._sha, first, last),
            ).fetchall()
        if [r[0] for r in rows] != list(range(first, last + 1)):
            raise StorageError(
                f"blob {self._sha} is missing chunks {first}..{last} in schema {self._db.schema}"
            )
        data = b"".join(bytes(r[1]) for r in rows)
        start = self._pos - first * self._chunk
        piece = data[start : start + want]
        buf[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)
