"""SQLite side of the fleet inventory and rollout campaigns (a mixin of ``SqliteMetadataStore``)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from server.storage.ports import StorageError
from server.storage.records import (
    CampaignEventRecord,
    CampaignMember,
    CampaignRecord,
    VehicleRecord,
)
from server.storage.sqlite_base import SqliteBase


class SqliteFleetMixin(SqliteBase):
    # -- fleet inventory ------------------------------------------------------------
    def upsert_vehicle(self, rec: VehicleRecord) -> None:
        installed = json.dumps({k: list(v) for k, v in sorted(rec.installed.items())})
        with self._tx() as db:
            db.execute(
                "INSERT INTO vehicles VALUES (?,?,?,?,?,?,?) ON CONFLICT (vehicle_id) DO UPDATE SET "
                "hardware_id=excluded.hardware_id, tags=excluded.tags, installed=excluded.installed, "
                "wanted=excluded.wanted, last_seen=excluded.last_seen",
                (
                    rec.vehicle_id,
                    rec.hardware_id,
                    json.dumps(list(rec.tags)),
                    installed,
                    json.dumps(list(rec.wanted)),
                    rec.first_seen,
                    rec.last_seen,
                ),
            )

    @staticmethod
    def _vehicle(row: tuple[Any, ...]) -> VehicleRecord:
        return VehicleRecord(
            vehicle_id=row[0],
            hardware_id=row[1],
            tags=tuple(json.loads(row[2])),
            installed={k: (v[0], v[1]) for k, v in json.loads(row[3]).items()},
            wanted=tuple(json.loads(row[4])),
            first_seen=row[5],
            last_seen=row[6],
        )

    def get_vehicle(self, vehicle_id: str) -> VehicleRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM vehicles WHERE vehicle_id=?", (vehicle_id,)
            ).fetchone()
        return self._vehicle(row) if row else None

    def list_vehicles(self) -> list[VehicleRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM vehicles ORDER BY vehicle_id").fetchall()
        return [self._vehicle(r) for r in rows]

    # -- rollout campaigns ------------------------------------------------------------
    def add_campaign(
        self, rec: CampaignRecord, members: list[CampaignMember], events: list[CampaignEventRecord]
    ) -> None:
        """Definition, membership and first events in one transaction: all or nothing."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO campaigns VALUES (?,?,?)",
                    (rec.campaign_id, rec.spec_json, rec.created_at),
                )
                db.executemany(
                    "INSERT INTO campaign_members VALUES (?,?,?,?)",
                    [(m.campaign_id, m.vehicle_id, m.wave, m.offered_at) for m in members],
                )
                for ev in events:
                    self._insert_event(db, ev)
        except sqlite3.IntegrityError as e:
            raise StorageError(
                f"campaign {rec.campaign_id} already exists or lists a vehicle twice: {e}"
            ) from e

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM campaigns WHERE campaign_id=?", (campaign_id,)
            ).fetchone()
        return CampaignRecord(*row) if row else None

    def list_campaigns(self) -> list[CampaignRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM campaigns ORDER BY created_at, campaign_id"
            ).fetchall()
        return [CampaignRecord(*r) for r in rows]

    def list_campaign_members(self, campaign_id: str) -> list[CampaignMember]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM campaign_members WHERE campaign_id=? ORDER BY wave, vehicle_id",
                (campaign_id,),
            ).fetchall()
        return [CampaignMember(*r) for r in rows]

    def memberships_of(self, vehicle_id: str) -> list[CampaignMember]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM campaign_members WHERE vehicle_id=?", (vehicle_id,)
            ).fetchall()
        return [CampaignMember(*r) for r in rows]

    def mark_offered(self, campaign_id: str, vehicle_id: str, at: float) -> bool:
        """Record the first offer; False when it was already recorded (by any replica)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE campaign_members SET offered_at=? WHERE campaign_id=? AND vehicle_id=? AND offered_at IS NULL",
                (at, campaign_id, vehicle_id),
            )
        return cur.rowcount == 1

    @staticmethod
    def _insert_event(db: sqlite3.Connection, ev: CampaignEventRecord) -> None:
        db.execute(
            "INSERT INTO campaign_events (campaign_id, at, kind, wave, detail, actor) "
            "VALUES (?,?,?,?,?,?)",
            (ev.campaign_id, ev.at, ev.kind, ev.wave, ev.detail, ev.actor),
        )

    def add_campaign_event(self, ev: CampaignEventRecord) -> None:
        with self._tx() as db:
            self._insert_event(db, ev)

    def list_campaign_events(self, campaign_id: str) -> list[CampaignEventRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, at, kind, wave, detail, actor FROM campaign_events "
                "WHERE campaign_id=? ORDER BY id",
                (campaign_id,),
            ).fetchall()
        return [CampaignEventRecord(*r) for r in rows]
