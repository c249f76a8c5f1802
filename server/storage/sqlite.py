"""The embedded metadata store: one SQLite file in WAL mode, serialised by a lock.

``SqliteMetadataStore`` implements every port of ``ports.py``: models, TUF
metadata, encodings and reports here, the fleet and campaigns in
``sqlite_fleet.py``, the director in ``sqlite_director.py``. The schema is
versioned (``sqlite_schema.py``).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.storage.ports import StorageError
from server.storage.records import ENCODING_COLUMNS, EncodingRecord, ModelRecord, ReportRecord
from server.storage.sqlite_audit import SqliteAuditMixin
from server.storage.sqlite_base import SqliteBase
from server.storage.sqlite_director import SqliteDirectorMixin
from server.storage.sqlite_fleet import SqliteFleetMixin
from server.storage.sqlite_releases import SqliteReleasesMixin
from server.storage.sqlite_schema import migrate


class SqliteMetadataStore(
    SqliteFleetMixin, SqliteDirectorMixin, SqliteAuditMixin, SqliteReleasesMixin, SqliteBase
):
    """The embedded default: one SQLite file in WAL mode, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._signing = threading.RLock()
        self._signing_depth = 0
        self._signing_fd: int | None = None
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            migrate(self._db, str(self.path))
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._signing:
            if self._signing_fd is not None:
                os.close(self._signing_fd)
                self._signing_fd = None

    @contextmanager
    def signing_lock(self, scope: str = "") -> Iterator[None]:
        # One lock for every scope, apart from the store's, so readers are not held up
        # meanwhile. In-process (re-entrant) first, then a file lock beside the database:
        # `registry serve --workers N` runs N processes on one SQLite file, and two of them
        # signing at once (the first root at start, two publishes) would both write the
        # same next version and one would fail.
        with self._signing:
            fd = self._signing_file()
            if self._signing_depth == 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._signing_depth += 1
            try:
                yield
            finally:
                self._signing_depth -= 1
                if self._signing_depth == 0:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _signing_file(self) -> int:
        if self._signing_fd is None:
            lock = self.path.with_name(self.path.name + ".signing.lock")
            self._signing_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        return self._signing_fd

    # -- models ---------------------------------------------------------------
    def add_model(self, rec: ModelRecord) -> None:
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO models VALUES (?,?,?,?,?,?,?,?)",
                    (
                        rec.name,
                        rec.version,
                        rec.sha256,
                        rec.length,
                        rec.target_path,
                        json.dumps(list(rec.hardware_ids)),
                        rec.metadata_json,
                        rec.published_at,
                    ),
                )
        except sqlite3.IntegrityError as e:
            raise StorageError(f"model {rec.name} {rec.version} already exists") from e

    @staticmethod
    def _model(row: tuple[Any, ...]) -> ModelRecord:
        return ModelRecord(
            name=row[0],
            version=row[1],
            sha256=row[2],
            length=row[3],
            target_path=row[4],
            hardware_ids=tuple(json.loads(row[5])),
            metadata_json=row[6],
            published_at=row[7],
        )

    def get_model(self, name: str, version: str) -> ModelRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM models WHERE name=? AND version=?", (name, version)
            ).fetchone()
        return self._model(row) if row else None

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        with self._lock:
            if name:
                rows = self._db.execute(
                    "SELECT * FROM models WHERE name=? ORDER BY published_at", (name,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM models ORDER BY name, published_at"
                ).fetchall()
        return [self._model(r) for r in rows]

    def models_by_sha256(self, sha256: str) -> list[ModelRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM models WHERE sha256=?", (sha256,)).fetchall()
        return [self._model(r) for r in rows]

    # -- TUF metadata history ---------------------------------------------------
    def put_tuf_metadata(self, role: str, version: int, data: bytes) -> None:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO tuf_metadata VALUES (?,?,?)", (role, version, data))
        except sqlite3.IntegrityError as e:
            raise StorageError(f"TUF {role} version {version} already exists") from e

    def tuf_versions(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT role, MAX(version) FROM tuf_metadata GROUP BY role"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def get_tuf_metadata(self, role: str, version: int | None = None) -> bytes | None:
        with self._lock:
            if version is None:
                row = self._db.execute(
                    "SELECT data FROM tuf_metadata WHERE role=? ORDER BY version DESC LIMIT 1",
                    (role,),
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT data FROM tuf_metadata WHERE role=? AND version=?", (role, version)
                ).fetchone()
        return bytes(row[0]) if row else None

    # -- transport encodings --------------------------------------------------------
    def put_encodings(self, name: str, version: str, encodings: list[EncodingRecord]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM encodings WHERE name=? AND version=?", (name, version))
            db.executemany(
                "INSERT INTO encodings (name, version, base_sha256, codec, blob_sha256, length) VALUES (?,?,?,?,?,?)",
                [
                    (name, version, e.base_sha256, e.codec, e.blob_sha256, e.length)
                    for e in encodings
                ],
            )

    def list_encodings(self, name: str, version: str) -> list[EncodingRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE name=? AND version=? ORDER BY base_sha256",
                (name, version),
            ).fetchall()
        return [EncodingRecord(*r) for r in rows]

    def encoding_by_blob(self, blob_sha256: str) -> EncodingRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE blob_sha256=? LIMIT 1",
                (blob_sha256,),
            ).fetchone()
        return EncodingRecord(*row) if row else None

    # -- vehicle reports ----------------------------------------------------------
    def add_report(self, rep: ReportRecord) -> None:
        body = {k: v for k, v in rep.__dict__.items() if k != "received_at"}
        with self._tx() as db:
            db.execute(
                "INSERT INTO reports (vehicle_id, name, version, status, body) VALUES (?,?,?,?,?)",
                (rep.vehicle_id, rep.name, rep.version, rep.status, json.dumps(body)),
            )

    def list_reports(self, vehicle_id: str | None = None) -> list[ReportRecord]:
        with self._lock:
            if vehicle_id:
                rows = self._db.execute(
                    "SELECT body, received_at FROM reports WHERE vehicle_id=? ORDER BY id",
                    (vehicle_id,),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT body, received_at FROM reports ORDER BY id"
                ).fetchall()
        return [ReportRecord(**{**json.loads(b), "received_at": t}) for b, t in rows]

    def list_reports_for_model(self, name: str, version: str) -> list[ReportRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body, received_at FROM reports WHERE name=? AND version=? ORDER BY id",
                (name, version),
            ).fetchall()
        return [ReportRecord(**{**json.loads(b), "received_at": t}) for b, t in rows]
