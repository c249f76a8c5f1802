"""PostgreSQL side of the audit log (a mixin of ``PgMetadataStore``): one log for every replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from server.storage.records import AuditEntry
from server.storage.sqlite_audit import audit_where

if TYPE_CHECKING:
    from server.storage.postgres_db import PgDatabase


class PgAuditMixin:
    db: PgDatabase

    def append_audit(self, entry: AuditEntry) -> int:
        with self.db.tx() as c:
            row = c.execute(
                "INSERT INTO audit_log (at, actor, action, args) VALUES (%s,%s,%s,%s) RETURNING seq",
                (entry.at, entry.actor, entry.action, Jsonb(entry.args)),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def list_audit(
        self, limit: int = 100, actor: str = "", action: str = "", before_seq: int | None = None
    ) -> list[AuditEntry]:
        where, params = audit_where(actor, action, before_seq, "%s")
        with self.db.conn() as c:
            rows = c.execute(
                f"SELECT seq, at, actor, action, args FROM audit_log{where} ORDER BY seq DESC LIMIT %s",
                (*params, limit),
            ).fetchall()
        return [AuditEntry(at, who, what, args, seq) for seq, at, who, what, args in rows]
