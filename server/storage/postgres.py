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

Needs the ``pg`` extra (psycopg 3 and its pool). The connection pool is in
``postgres_db.py``, blobs in ``postgres_blobs.py``, the fleet and campaigns in
``postgres_fleet.py``, the director in ``postgres_director.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from server.storage.ports import StorageError
from server.storage.postgres_audit import PgAuditMixin
from server.storage.postgres_blobs import PgBlobStore
from server.storage.postgres_db import PgDatabase, redact
from server.storage.postgres_director import PgDirectorMixin
from server.storage.postgres_fleet import PgFleetMixin
from server.storage.postgres_releases import PgReleasesMixin
from server.storage.postgres_schema import LOCK_TUF_SIGNING, utc_text
from server.storage.records import ENCODING_COLUMNS, EncodingRecord, ModelRecord, ReportRecord

log = logging.getLogger(__name__)


_MODEL_COLS = (
    "name, version, sha256, length, target_path, hardware_ids, metadata_json, published_at"
)


class PgMetadataStore(PgFleetMixin, PgDirectorMixin, PgAuditMixin, PgReleasesMixin):
    """``MetadataStore`` on PostgreSQL; safe to share between processes and threads."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    @classmethod
    def connect(cls, dsn: str) -> PgMetadataStore:
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
        return [ModelRecord(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), r[6], r[7]) for r in rows]

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
                c.execute(
                    "INSERT INTO tuf_metadata (role, version, data) VALUES (%s,%s,%s)",
                    (role, version, data),
                )
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
                    "SELECT data FROM tuf_metadata WHERE role=%s ORDER BY version DESC LIMIT 1",
                    (role,),
                ).fetchone()
            else:
                row = c.execute(
                    "SELECT data FROM tuf_metadata WHERE role=%s AND version=%s", (role, version)
                ).fetchone()
        return bytes(row[0]) if row else None

    # -- transport encodings --------------------------------------------------------
    def put_encodings(self, name: str, version: str, encodings: list[EncodingRecord]) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM encodings WHERE name=%s AND version=%s", (name, version))
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO encodings (name, version, base_sha256, codec, blob_sha256, length) "
                    "VALUES (%s,%s,%s,%s,%s,%s)",
                    [
                        (name, version, e.base_sha256, e.codec, e.blob_sha256, e.length)
                        for e in encodings
                    ],
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
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE blob_sha256=%s LIMIT 1",
                (blob_sha256,),
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
        return (
            self._reports("WHERE vehicle_id=%s", (vehicle_id,)) if vehicle_id else self._reports()
        )

    def _reports(self, where: str = "", params: tuple = ()) -> list[ReportRecord]:
        with self.db.conn() as c:
            rows = c.execute(
                f"SELECT body, received_at FROM reports {where} ORDER BY id", params
            ).fetchall()
        return [ReportRecord(**{**body, "received_at": utc_text(t)}) for body, t in rows]


def open_postgres(dsn: str, spool_dir: Path | None = None) -> tuple[PgMetadataStore, PgBlobStore]:
    """Metadata and blobs sharing one pool (migrated on open)."""
    db = PgDatabase(dsn)
    log.info("PostgreSQL storage: %s (schema %s)", redact(dsn), db.schema)
    return PgMetadataStore(db), PgBlobStore(db, spool_dir)
