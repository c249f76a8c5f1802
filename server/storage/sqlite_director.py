"""SQLite side of the director: per-vehicle TUF chains, assignments, manifests (a mixin)."""

from __future__ import annotations

import json
import sqlite3

from server.storage.ports import StorageError
from server.storage.records import ManifestRecord
from server.storage.sqlite_base import SqliteBase


class SqliteDirectorMixin(SqliteBase):
    # -- the director ----------------------------------------------------------------
    def put_vehicle_metadata(self, vehicle_id: str, role: str, version: int, data: bytes) -> None:
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO vehicle_metadata VALUES (?,?,?,?)",
                    (vehicle_id, role, version, data),
                )
        except sqlite3.IntegrityError as e:
            raise StorageError(
                f"director {role} version {version} for {vehicle_id!r} already exists"
            ) from e

    def get_vehicle_metadata(
        self, vehicle_id: str, role: str, version: int | None = None
    ) -> bytes | None:
        with self._lock:
            if version is None:
                row = self._db.execute(
                    "SELECT data FROM vehicle_metadata WHERE vehicle_id=? AND role=? ORDER BY version DESC LIMIT 1",
                    (vehicle_id, role),
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT data FROM vehicle_metadata WHERE vehicle_id=? AND role=? AND version=?",
                    (vehicle_id, role, version),
                ).fetchone()
        return bytes(row[0]) if row else None

    def set_assignment(self, vehicle_id: str, name: str, version: str | None) -> None:
        with self._tx() as db:
            if version is None:
                db.execute(
                    "DELETE FROM assignments WHERE vehicle_id=? AND name=?", (vehicle_id, name)
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO assignments VALUES (?,?,?)", (vehicle_id, name, version)
                )

    def get_assignments(self, vehicle_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, version FROM assignments WHERE vehicle_id=?", (vehicle_id,)
            ).fetchall()
        return dict(rows)

    def get_manifest(self, vehicle_id: str) -> ManifestRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM vehicle_manifests WHERE vehicle_id=?", (vehicle_id,)
            ).fetchone()
        if row is None:
            return None
        return ManifestRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5])

    def accept_manifest(self, rec: ManifestRecord) -> bool:
        """Store ``rec`` only if its counter is above the stored one (atomic compare-and-set)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT counter FROM vehicle_manifests WHERE vehicle_id=?", (rec.vehicle_id,)
            ).fetchone()
            if row is not None and row[0] >= rec.counter:
                return False
            db.execute(
                "INSERT OR REPLACE INTO vehicle_manifests (vehicle_id, hardware_id, counter, manifest_json, attacks) "
                "VALUES (?,?,?,?,?)",
                (
                    rec.vehicle_id,
                    rec.hardware_id,
                    rec.counter,
                    rec.manifest_json,
                    json.dumps(list(rec.attacks)),
                ),
            )
        return True
