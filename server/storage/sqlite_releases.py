"""SQLite side of the release log (``server/releases.py``), a mixin of ``SqliteMetadataStore``."""

from __future__ import annotations

from server.storage.records import ReleaseRecord
from server.storage.sqlite_base import SqliteBase

_COLUMNS = "name, version, kind, scope, actor, reason, at"


class SqliteReleasesMixin(SqliteBase):
    def add_release(self, rec: ReleaseRecord) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO releases ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (rec.name, rec.version, rec.kind, rec.scope, rec.actor, rec.reason, rec.at),
            )

    def list_releases(self, name: str | None = None) -> list[ReleaseRecord]:
        with self._lock:
            if name is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM releases ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM releases WHERE name=? ORDER BY id", (name,)
                ).fetchall()
        return [ReleaseRecord(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6])) for r in rows]
