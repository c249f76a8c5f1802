"""PostgreSQL storage: what several stateless registry replicas share.

``ota registry serve --db postgresql://…`` keeps everything here, blobs
included, so a replica holds nothing of its own and any replica can answer any
vehicle. Blobs live in the database (content-addressed, in 256 KiB chunks)
rather than on a shared filesystem: models are a few MB, one backup then covers
the whole registry, a blob and the rows that refer to it commit together, and
a resumed download reads only the chunks it needs.

Online signing (snapshot and timestamp, targets where a development registry
holds that key, and each vehicle's director chain) is serialised across
replicas by ``signing_lock(scope)``: a transaction-scoped advisory lock held on
one pinned connection, so every metadata version written under it commits
atomically with the others or not at all, and two replicas never sign the same
version.

Needs the ``pg`` extra (psycopg 3 and its pool).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as e:  # the embedded default (SQLite) must not need it
    raise ImportError(
        f"the PostgreSQL backend needs psycopg 3 ({e}); install it with: pip install 'squeeze-ota[pg]'"
    ) from None

from server.storage import (
    ENCODING_COLUMNS,
    BlobNotFound,
    EncodingRecord,
    ModelRecord,
    ReportRecord,
    StorageError,
)
from server.storage_pg_director import PgDirectorMixin
from server.storage_pg_fleet import PgFleetMixin
from server.storage_pg_schema import LOCK_TUF_SIGNING, migrate, utc_text

log = logging.getLogger(__name__)

BLOB_CHUNK = 256 * 1024  # equals the Download chunk, so one served chunk is one row


def is_postgres_url(db: str | None) -> bool:
    return bool(db) and db.split("://", 1)[0] in ("postgresql", "postgres")  # type: ignore[union-attr]


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items()))


class PgDatabase:
    """A connection pool plus a per-thread pinned transaction for locked sections."""

    def __init__(self, dsn: str, max_connections: int = 20, connect_timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            open=False,
            name="ota-registry",
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as e:
            self.pool.close()
            raise StorageError(f"cannot connect to PostgreSQL ({redact(dsn)}) within {connect_timeout_s:.0f} s: {e}") from None
        try:
            with self.pool.connection() as conn:
                migrate(conn)
                self.schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        except BaseException:
            self.pool.close()  # no pool threads left behind by a registry that will not start
            raise

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        """The thread's pinned connection inside ``locked``, else one from the pool."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.pool.connection() as c:
            yield c

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection]:
        """A transaction (a savepoint when nested in ``locked``)."""
        with self.conn() as c, c.transaction():
            yield c

    @contextmanager
    def locked(self, lock_class: int, scope: str = "") -> Iterator[None]:
        """Hold an advisory lock on (schema, ``scope``) for the block, in one transaction.

        Re-entrant within a thread; a nested block with another scope takes that
        lock too, in the same transaction. Everything the thread's store calls
        write in the outermost block commits at its end, atomically, or rolls
        back on an exception.
        """
        key = (lock_class, scope)
        held: set | None = getattr(self._local, "held", None)
        if held is not None:  # nested in a locked block of this thread
            if key not in held:
                self._advisory(self._local.conn, lock_class, scope)
                held.add(key)  # held until the outermost transaction ends
            yield
            return
        with self.pool.connection() as c, c.transaction():
            self._advisory(c, lock_class, scope)
            self._local.conn, self._local.held = c, {key}
            try:
                yield
            finally:
                self._local.conn, self._local.held = None, None

    @staticmethod
    def _advisory(c: psycopg.Connection, lock_class: int, scope: str) -> None:
        c.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() || ':' || %s))", (lock_class, scope))


_MODEL_COLS = "name, version, sha256, length, target_path, hardware_ids, metadata_json, published_at"


class PgMetadataStore(PgFleetMixin, PgDirectorMixin):
    """``MetadataStore`` on PostgreSQL; safe to share between processes and threads."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    @classmethod
    def connect(cls, dsn: str) -> "PgMetadataStore":
        return cls(PgDatabase(dsn))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def signing_lock(self, scope: str = "") -> Iterator[None]:
        """Serialise TUF signing of ``scope`` (the repository, or e.g. one vehicle's
        director metadata) across every replica sharing this database."""
        with self.db.locked(LOCK_TUF_SIGNING, scope):
            yield

    # -- models ---------------------------------------------------------------
    def add_model(self, rec: ModelRecord) -> None:
        try:
            with self.db.tx() as c:
                c.execute(
                    f"INSERT INTO models ({_MODEL_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                    (
                        rec.name,
                        rec.version,
                        rec.sha256,
                        rec.length,
                        rec.target_path,
                        list(rec.hardware_ids),
                        rec.metadata_json,
                        rec.published_at,
                    ),
                )
        except pg_errors.UniqueViolation as e:
            raise StorageError(f"model {rec.name} {rec.version} already exists") from e

    def _models(self, where: str = "", params: tuple = (), order: str = "") -> list[ModelRecord]:
        with self.db.conn() as c:
            rows = c.execute(f"SELECT {_MODEL_COLS} FROM models {where} {order}", params).fetchall()
        # Columns in ModelRecord's field order; hardware_ids is a TEXT[] here.
        return [ModelRecord(*r[:5], tuple(r[5]), *r[6:]) for r in rows]

    def get_model(self, name: str, version: str) -> ModelRecord | None:
        found = self._models("WHERE name=%s AND version=%s", (name, version))
        return found[0] if found else None

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        if name:
            return self._models("WHERE name=%s", (name,), "ORDER BY published_at")
        return self._models(order="ORDER BY name, published_at")

    def models_by_sha256(self, sha256: str) -> list[ModelRecord]:
        return self._models("WHERE sha256=%s", (sha256,))

    # -- TUF metadata history ---------------------------------------------------
    def put_tuf_metadata(self, role: str, version: int, data: bytes) -> None:
        try:
            with self.db.tx() as c:
                c.execute("INSERT INTO tuf_metadata (role, version, data) VALUES (%s,%s,%s)", (role, version, data))
        except pg_errors.UniqueViolation as e:
            raise StorageError(f"TUF {role} version {version} already exists") from e

    def tuf_versions(self) -> dict[str, int]:
        with self.db.conn() as c:
            rows = c.execute("SELECT role, MAX(version) FROM tuf_metadata GROUP BY role").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def get_tuf_metadata(self, role: str, version: int | None = None) -> bytes | None:
        with self.db.conn() as c:
            if version is None:
                row = c.execute(
                    "SELECT data FROM tuf_metadata WHERE role=%s ORDER BY version DESC LIMIT 1", (role,)
                ).fetchone()
            else:
                row = c.execute("SELECT data FROM tuf_metadata WHERE role=%s AND version=%s", (role, version)).fetchone()
        return bytes(row[0]) if row else None

    # -- transport encodings --------------------------------------------------------
    def put_encodings(self, name: str, version: str, encodings: list[EncodingRecord]) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM encodings WHERE name=%s AND version=%s", (name, version))
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO encodings (name, version, base_sha256, codec, blob_sha256, length) "
                    "VALUES (%s,%s,%s,%s,%s,%s)",
                    [(name, version, e.base_sha256, e.codec, e.blob_sha256, e.length) for e in encodings],
                )

    def list_encodings(self, name: str, version: str) -> list[EncodingRecord]:
        with self.db.conn() as c:
            rows = c.execute(
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE name=%s AND version=%s ORDER BY base_sha256",
                (name, version),
            ).fetchall()
        return [EncodingRecord(*r) for r in rows]

    def encoding_by_blob(self, blob_sha256: str) -> EncodingRecord | None:
        with self.db.conn() as c:
            row = c.execute(
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE blob_sha256=%s LIMIT 1", (blob_sha256,)
            ).fetchone()
        return EncodingRecord(*row) if row else None

    # -- vehicle reports ----------------------------------------------------------
    def add_report(self, rep: ReportRecord) -> None:
        body = {k: v for k, v in rep.__dict__.items() if k != "received_at"}
        with self.db.tx() as c:
            c.execute(
                "INSERT INTO reports (vehicle_id, name, version, status, body) VALUES (%s,%s,%s,%s,%s)",
                (rep.vehicle_id, rep.name, rep.version, rep.status, Jsonb(body)),
            )

    def list_reports(self, vehicle_id: str | None = None) -> list[ReportRecord]:
        return self._reports("WHERE vehicle_id=%s", (vehicle_id,)) if vehicle_id else self._reports()

    def _reports(self, where: str = "", params: tuple = ()) -> list[ReportRecord]:
        with self.db.conn() as c:
            rows = c.execute(f"SELECT body, received_at FROM reports {where} ORDER BY id", params).fetchall()
        return [ReportRecord(**{**body, "received_at": utc_text(t)}) for body, t in rows]


class PgBlobStore:
    """``BlobStore`` on PostgreSQL: content-addressed, chunked, verified on the way in."""

    def __init__(self, db: PgDatabase, spool_dir: Path | None = None) -> None:
        self.db = db
        self.spool_dir = Path(spool_dir) if spool_dir else Path(tempfile.gettempdir()) / "ota-registry-spool"
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
                raise StorageError(f"{where}: content hashes to {h.hexdigest()}, not the claimed {sha256}; not stored")
            c.execute(
                "INSERT INTO blobs (sha256, length, chunk_size) VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                (sha256, length, BLOB_CHUNK),
            )

    def _meta(self, sha256: str) -> tuple[int, int]:
        _check_digest(sha256)
        with self.db.conn() as c:
            row = c.execute("SELECT length, chunk_size FROM blobs WHERE sha256=%s", (sha256,)).fetchone()
        if row is None:
            raise BlobNotFound(f"blob {sha256} is not in the PostgreSQL store (schema {self.db.schema})")
        return int(row[0]), int(row[1])

    def open(self, sha256: str) -> BinaryIO:
        length, chunk_size = self._meta(sha256)
        return io.BufferedReader(_PgBlobReader(self.db, sha256, length, chunk_size), buffer_size=chunk_size)

    def size(self, sha256: str) -> int:
        return self._meta(sha256)[0]

    def exists(self, sha256: str) -> bool:
        try:
            self._meta(sha256)
        except BlobNotFound:
            return False
        return True


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

    def readinto(self, buf) -> int:  # type: ignore[override]
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
            raise StorageError(f"blob {self._sha} is missing chunks {first}..{last} in schema {self._db.schema}")
        data = b"".join(bytes(r[1]) for r in rows)
        start = self._pos - first * self._chunk
        piece = data[start : start + want]
        buf[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


def open_postgres(dsn: str, spool_dir: Path | None = None) -> tuple[PgMetadataStore, PgBlobStore]:
    """Metadata and blobs sharing one pool (migrated on open)."""
    db = PgDatabase(dsn)
    log.info("PostgreSQL storage: %s (schema %s)", redact(dsn), db.schema)
    return PgMetadataStore(db), PgBlobStore(db, spool_dir)
