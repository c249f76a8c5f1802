"""The audit log's storage on both backends: one append-only table, ``audit_log``.

SQLite keeps it in the registry's own database file (same connection and lock
as the rest of the store, so an entry is as durable as the change it records);
PostgreSQL in the shared database, so every replica appends to and reads one
log. Neither has an UPDATE or DELETE path. The table is created on open,
idempotently, with its own schema version recorded in ``audit_schema``.
"""

from __future__ import annotations

import json
from typing import Any

from server.audit import AuditEntry, AuditLog

SCHEMA_VERSION = 1
_SQLITE = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, seq);
CREATE TABLE IF NOT EXISTS audit_schema (version INTEGER PRIMARY KEY);
INSERT OR IGNORE INTO audit_schema VALUES (1);
"""
_PG = [
    "CREATE TABLE IF NOT EXISTS audit_log (seq BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, "
    "actor TEXT NOT NULL, action TEXT NOT NULL, args JSONB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, seq)",
    "CREATE TABLE IF NOT EXISTS audit_schema (version INTEGER PRIMARY KEY)",
    "INSERT INTO audit_schema VALUES (1) ON CONFLICT DO NOTHING",
]


def _where(actor: str, action: str, before_seq: int | None, mark: str) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for col, val in (("actor", actor), ("action", action)):
        if val:
            clauses.append(f"{col} = {mark}")
            params.append(val)
    if before_seq is not None:
        clauses.append(f"seq < {mark}")
        params.append(before_seq)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class SqliteAuditStore:
    def __init__(self, store: Any) -> None:  # a SqliteMetadataStore: its connection and lock
        self._store = store
        with store._lock:
            store._db.executescript(_SQLITE)

    def append_audit(self, entry: AuditEntry) -> int:
        with self._store._tx() as db:
            cur = db.execute("INSERT INTO audit_log (at, actor, action, args) VALUES (?,?,?,?)",
                             (entry.at, entry.actor, entry.action, json.dumps(entry.args, default=str)))
            return int(cur.lastrowid or 0)

    def list_audit(self, limit: int = 100, actor: str = "", action: str = "",
                   before_seq: int | None = None) -> list[AuditEntry]:
        where, params = _where(actor, action, before_seq, "?")
        with self._store._lock:
            rows = self._store._db.execute(
                f"SELECT seq, at, actor, action, args FROM audit_log{where} ORDER BY seq DESC LIMIT ?",
                (*params, limit)).fetchall()
        return [AuditEntry(at, who, what, json.loads(args), seq) for seq, at, who, what, args in rows]


class PgAuditStore:
    def __init__(self, db: Any) -> None:  # a PgDatabase
        self._db = db
        with db.tx() as c:
            for stmt in _PG:
                c.execute(stmt)

    def append_audit(self, entry: AuditEntry) -> int:
        from psycopg.types.json import Jsonb

        with self._db.tx() as c:
            row = c.execute("INSERT INTO audit_log (at, actor, action, args) VALUES (%s,%s,%s,%s) RETURNING seq",
                            (entry.at, entry.actor, entry.action, Jsonb(entry.args))).fetchone()
        return int(row[0])

    def list_audit(self, limit: int = 100, actor: str = "", action: str = "",
                   before_seq: int | None = None) -> list[AuditEntry]:
        where, params = _where(actor, action, before_seq, "%s")
        with self._db.conn() as c:
            rows = c.execute(f"SELECT seq, at, actor, action, args FROM audit_log{where} ORDER BY seq DESC LIMIT %s",
                             (*params, limit)).fetchall()
        return [AuditEntry(at, who, what, args, seq) for seq, at, who, what, args in rows]


def open_audit(store: Any) -> AuditLog:
    """The audit log kept by the registry's metadata store (SQLite or PostgreSQL)."""
    db = getattr(store, "db", None)
    return AuditLog(PgAuditStore(db) if db is not None and hasattr(db, "pool") else SqliteAuditStore(store))
