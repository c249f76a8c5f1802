"""PostgreSQL side of the director (``server/director.py``): per-vehicle TUF
chains, assignments and the last verified version manifest of each vehicle.

A mixin of ``PgMetadataStore``. Manifest acceptance is one conditional upsert,
so two replicas receiving a vehicle's manifests at once still keep its counter
strictly increasing: a replay loses, whichever replica it reaches.
"""

from __future__ import annotations

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from server.storage.ports import StorageError
from server.storage.postgres_db import PgDatabase
from server.storage.postgres_schema import utc_text
from server.storage.records import ManifestRecord


class PgDirectorMixin:
    db: PgDatabase

    def put_vehicle_metadata(self, vehicle_id: str, role: str, version: int, data: bytes) -> None:
        try:
            with self.db.tx() as c:
                c.execute(
                    "INSERT INTO vehicle_metadata VALUES (%s,%s,%s,%s)",
                    (vehicle_id, role, version, data),
                )
        except pg_errors.UniqueViolation as e:
            raise StorageError(
                f"director {role} version {version} for {vehicle_id!r} already exists"
            ) from e

    def get_vehicle_metadata(
        self, vehicle_id: str, role: str, version: int | None = None
    ) -> bytes | None:
        with self.db.conn() as c:
            if version is None:
                row = c.execute(
                    "SELECT data FROM vehicle_metadata WHERE vehicle_id=%s AND role=%s ORDER BY version DESC LIMIT 1",
                    (vehicle_id, role),
                ).fetchone()
            else:
                row = c.execute(
                    "SELECT data FROM vehicle_metadata WHERE vehicle_id=%s AND role=%s AND version=%s",
                    (vehicle_id, role, version),
                ).fetchone()
        return bytes(row[0]) if row else None

    def set_assignment(self, vehicle_id: str, name: str, version: str | None) -> None:
        with self.db.tx() as c:
            if version is None:
                c.execute(
                    "DELETE FROM assignments WHERE vehicle_id=%s AND name=%s", (vehicle_id, name)
                )
            else:
                c.execute(
                    "INSERT INTO assignments VALUES (%s,%s,%s) "
                    "ON CONFLICT (vehicle_id, name) DO UPDATE SET version=excluded.version",
                    (vehicle_id, name, version),
                )

    def get_assignments(self, vehicle_id: str) -> dict[str, str]:
        with self.db.conn() as c:
            rows = c.execute(
                "SELECT name, version FROM assignments WHERE vehicle_id=%s", (vehicle_id,)
            ).fetchall()
        return {n: v for n, v in rows}

    def get_manifest(self, vehicle_id: str) -> ManifestRecord | None:
        with self.db.conn() as c:
            row = c.execute(
                "SELECT vehicle_id, hardware_id, counter, manifest_json, attacks, received_at "
                "FROM vehicle_manifests WHERE vehicle_id=%s",
                (vehicle_id,),
            ).fetchone()
        if row is None:
            return None
        return ManifestRecord(row[0], row[1], int(row[2]), row[3], tuple(row[4]), utc_text(row[5]))

    def accept_manifest(self, rec: ManifestRecord) -> bool:
        """Store ``rec`` only if its counter is above the stored one (one atomic statement)."""
        with self.db.tx() as c:
            cur = c.execute(
                "INSERT INTO vehicle_manifests (vehicle_id, hardware_id, counter, manifest_json, attacks) "
                "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (vehicle_id) DO UPDATE SET hardware_id=excluded.hardware_id, "
                "counter=excluded.counter, manifest_json=excluded.manifest_json, attacks=excluded.attacks, "
                "received_at=clock_timestamp() WHERE vehicle_manifests.counter < excluded.counter",
                (
                    rec.vehicle_id,
                    rec.hardware_id,
                    rec.counter,
                    rec.manifest_json,
                    Jsonb(list(rec.attacks)),
                ),
            )
            return cur.rowcount == 1
