"""PostgreSQL side of the fleet inventory and rollout campaigns (see server/campaigns.py).

A mixin of ``PgMetadataStore``, kept apart because it is its own idea: the
vehicles the registry has seen, and the campaigns' definitions, members and
append-only event logs. Every replica reads and writes the same rows, so a
campaign's state, derived from them, is the same whichever replica answers.
"""

from __future__ import annotations

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from server.storage.ports import StorageError
from server.storage.postgres_db import PgDatabase
from server.storage.records import (
    CampaignEventRecord,
    CampaignMember,
    CampaignRecord,
    ReportRecord,
    VehicleRecord,
)

_VEHICLE_COLS = "vehicle_id, hardware_id, tags, installed, wanted, first_seen, last_seen"
_MEMBER_COLS = "campaign_id, vehicle_id, wave, offered_at"
_EVENT_COLS = "campaign_id, at, kind, wave, detail, actor"


def _vehicle(row: tuple) -> VehicleRecord:
    return VehicleRecord(
        vehicle_id=row[0],
        hardware_id=row[1],
        tags=tuple(row[2]),
        installed={k: (v[0], v[1]) for k, v in row[3].items()},
        wanted=tuple(row[4]),
        first_seen=row[5],
        last_seen=row[6],
    )


class PgFleetMixin:
    db: PgDatabase

    def _reports(self, where: str = "", params: tuple = ()) -> list[ReportRecord]:
        raise NotImplementedError  # PgMetadataStore's

    def list_reports_for_model(self, name: str, version: str) -> list[ReportRecord]:
        return self._reports("WHERE name=%s AND version=%s", (name, version))

    # -- fleet inventory ------------------------------------------------------------
    def upsert_vehicle(self, rec: VehicleRecord) -> None:
        with self.db.tx() as c:
            c.execute(
                f"INSERT INTO vehicles ({_VEHICLE_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (vehicle_id) DO UPDATE SET hardware_id=excluded.hardware_id, tags=excluded.tags, "
                "installed=excluded.installed, wanted=excluded.wanted, last_seen=excluded.last_seen",
                (
                    rec.vehicle_id,
                    rec.hardware_id,
                    list(rec.tags),
                    Jsonb({k: list(v) for k, v in sorted(rec.installed.items())}),
                    list(rec.wanted),
                    rec.first_seen,
                    rec.last_seen,
                ),
            )

    def get_vehicle(self, vehicle_id: str) -> VehicleRecord | None:
        with self.db.conn() as c:
            row = c.execute(
                f"SELECT {_VEHICLE_COLS} FROM vehicles WHERE vehicle_id=%s", (vehicle_id,)
            ).fetchone()
        return _vehicle(row) if row else None

    def list_vehicles(self) -> list[VehicleRecord]:
        with self.db.conn() as c:
            rows = c.execute(f"SELECT {_VEHICLE_COLS} FROM vehicles ORDER BY vehicle_id").fetchall()
        return [_vehicle(r) for r in rows]

    # -- rollout campaigns ------------------------------------------------------------
    def add_campaign(
        self, rec: CampaignRecord, members: list[CampaignMember], events: list[CampaignEventRecord]
    ) -> None:
        """Definition, membership and first events in one transaction: all or nothing."""
        try:
            with self.db.tx() as c, c.cursor() as cur:
                cur.execute(
                    "INSERT INTO campaigns (campaign_id, spec, created_at) VALUES (%s,%s,%s)",
                    (rec.campaign_id, rec.spec_json, rec.created_at),
                )
                cur.executemany(
                    f"INSERT INTO campaign_members ({_MEMBER_COLS}) VALUES (%s,%s,%s,%s)",
                    [(m.campaign_id, m.vehicle_id, m.wave, m.offered_at) for m in members],
                )
                cur.executemany(
                    f"INSERT INTO campaign_events ({_EVENT_COLS}) VALUES (%s,%s,%s,%s,%s,%s)",
                    [(e.campaign_id, e.at, e.kind, e.wave, e.detail, e.actor) for e in events],
                )
        except pg_errors.UniqueViolation as e:
            raise StorageError(
                f"campaign {rec.campaign_id} already exists or lists a vehicle twice: {e}"
            ) from e

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        with self.db.conn() as c:
            row = c.execute(
                "SELECT campaign_id, spec, created_at FROM campaigns WHERE campaign_id=%s",
                (campaign_id,),
            ).fetchone()
        return CampaignRecord(*row) if row else None

    def list_campaigns(self) -> list[CampaignRecord]:
        with self.db.conn() as c:
            rows = c.execute(
                "SELECT campaign_id, spec, created_at FROM campaigns ORDER BY created_at, campaign_id"
            )
            return [CampaignRecord(*r) for r in rows.fetchall()]

    def list_campaign_members(self, campaign_id: str) -> list[CampaignMember]:
        with self.db.conn() as c:
            rows = c.execute(
                f"SELECT {_MEMBER_COLS} FROM campaign_members WHERE campaign_id=%s ORDER BY wave, vehicle_id",
                (campaign_id,),
            ).fetchall()
        return [CampaignMember(*r) for r in rows]

    def memberships_of(self, vehicle_id: str) -> list[CampaignMember]:
        with self.db.conn() as c:
            rows = c.execute(
                f"SELECT {_MEMBER_COLS} FROM campaign_members WHERE vehicle_id=%s", (vehicle_id,)
            ).fetchall()
        return [CampaignMember(*r) for r in rows]

    def mark_offered(self, campaign_id: str, vehicle_id: str, at: float) -> bool:
        """Record the first offer; False when it was already recorded (by any replica)."""
        with self.db.tx() as c:
            cur = c.execute(
                "UPDATE campaign_members SET offered_at=%s "
                "WHERE campaign_id=%s AND vehicle_id=%s AND offered_at IS NULL",
                (at, campaign_id, vehicle_id),
            )
            return cur.rowcount == 1

    def add_campaign_event(self, ev: CampaignEventRecord) -> None:
        with self.db.tx() as c:
            c.execute(
                f"INSERT INTO campaign_events ({_EVENT_COLS}) VALUES (%s,%s,%s,%s,%s,%s)",
                (ev.campaign_id, ev.at, ev.kind, ev.wave, ev.detail, ev.actor),
            )

    def list_campaign_events(self, campaign_id: str) -> list[CampaignEventRecord]:
        with self.db.conn() as c:
            rows = c.execute(
                f"SELECT {_EVENT_COLS} FROM campaign_events WHERE campaign_id=%s ORDER BY id",
                (campaign_id,),
            ).fetchall()
        return [CampaignEventRecord(*r) for r in rows]
