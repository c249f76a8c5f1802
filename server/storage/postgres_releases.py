"""PostgreSQL side of the release log (``server/releases.py``), a mixin of ``PgMetadataStore``."""

from __future__ import annotations

from server.storage.postgres_db import PgDatabase
from server.storage.records import ReleaseRecord

_COLUMNS = "name, version, kind, scope, actor, reason, at"


class PgReleasesMixin:
    db: PgDatabase

    def add_release(self, rec: ReleaseRecord) -> None:
        with self.db.tx() as c:
            c.execute(
                f"INSERT INTO releases ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                (rec.name, rec.version, rec.kind, rec.scope, rec.actor, rec.reason, rec.at),
            )

    def list_releases(self, name: str | None = None) -> list[ReleaseRecord]:
        with self.db.conn() as c:
            if name is None:
                rows = c.execute(f"SELECT {_COLUMNS} FROM releases ORDER BY id").fetchall()
            else:
                rows = c.execute(
                    f"SELECT {_COLUMNS} FROM releases WHERE name=%s ORDER BY id", (name,)
                ).fetchall()
        return [ReleaseRecord(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6])) for r in rows]
