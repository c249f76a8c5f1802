"""SQLite side of the audit log (a mixin of ``SqliteMetadataStore``): append and read only."""

from __future__ import annotations

import json
from typing import Any

from server.storage.records import AuditEntry
from server.storage.sqlite_base import SqliteBase


def audit_where(
    actor: str, action: str, before_seq: int | None, mark: str
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for col, val in (("actor", actor), ("action", action)):
        if val:
            clauses.append(f"{col} = {mark}")
            params.append(val)
    if before_seq is not None:
        clauses.append(f"seq < {mark}")
        params.append(before_seq)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class SqliteAuditMixin(SqliteBase):
    def append_audit(self, entry: AuditEntry) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO audit_log (at, actor, action, args) VALUES (?,?,?,?)",
                (entry.at, entry.actor, entry.action, json.dumps(entry.args, default=str)),
            )
            return int(cur.lastrowid or 0)

    def list_audit(
        self, limit: int = 100, actor: str = "", action: str = "", before_seq: int | None = None
    ) -> list[AuditEntry]:
        where, params = audit_where(actor, action, before_seq, "?")
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, at, actor, action, args FROM audit_log{where} ORDER BY seq DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [
            AuditEntry(at, who, what, json.loads(args), seq) for seq, at, who, what, args in rows
        ]
