"""Versioned schema migrations for the embedded SQLite backend, applied on open.

Same rules as the PostgreSQL ones (``postgres_schema.py``): numbered blocks of
SQL, each applied once, in order, recorded in ``schema_migrations``, all pending
ones in one transaction; a database newer than this code refuses to open.
Migration 1 is the schema as it was before migrations existed (``IF NOT
EXISTS`` throughout), so a database made by an older registry is adopted as is.

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging
import sqlite3

from server.storage.migrations import Migration, SchemaError

log = logging.getLogger(__name__)

_V1 = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    length INTEGER NOT NULL,
    target_path TEXT NOT NULL,
    hardware_ids TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    published_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS models_sha256 ON models (sha256);
CREATE TABLE IF NOT EXISTS tuf_metadata (
    role TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (role, version)
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vehicle_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS reports_vehicle ON reports (vehicle_id);
CREATE TABLE IF NOT EXISTS encodings (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    base_sha256 TEXT NOT NULL,
    codec TEXT NOT NULL,
    blob_sha256 TEXT NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (name, version, base_sha256)
);
CREATE INDEX IF NOT EXISTS encodings_blob ON encodings (blob_sha256);
CREATE INDEX IF NOT EXISTS reports_model ON reports (name, version);
CREATE TABLE IF NOT EXISTS vehicles (
    vehicle_id TEXT PRIMARY KEY,
    hardware_id TEXT NOT NULL,
    tags TEXT NOT NULL,
    installed TEXT NOT NULL,
    wanted TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vehicle_metadata (
    vehicle_id TEXT NOT NULL,
    role TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (vehicle_id, role, version)
);
CREATE TABLE IF NOT EXISTS assignments (
    vehicle_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (vehicle_id, name)
);
CREATE TABLE IF NOT EXISTS vehicle_manifests (
    vehicle_id TEXT PRIMARY KEY,
    hardware_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    manifest_json TEXT NOT NULL,
    attacks TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign_id TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    wave INTEGER NOT NULL,
    offered_at REAL,
    PRIMARY KEY (campaign_id, vehicle_id)
);
CREATE INDEX IF NOT EXISTS campaign_members_vehicle ON campaign_members (vehicle_id);
CREATE TABLE IF NOT EXISTS campaign_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    wave INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS campaign_events_campaign ON campaign_events (campaign_id);
"""

_V2 = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, seq);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "models, TUF metadata, reports, encodings, fleet, campaigns, director", _V1),
    Migration(2, "the append-only audit log", _V2),
    Migration(
        3,
        "the release log: releases, allowed downgrades, re-releases (who, why)",
        """
CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX releases_name ON releases (name);
""",
    ),
    Migration(
        4,
        "campaign events carry their actor (the client certificate's identity)",
        "ALTER TABLE campaign_events ADD COLUMN actor TEXT NOT NULL DEFAULT ''",
    ),
)


def current_version(db: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 when unversioned or empty)."""
    row = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    if row is None:
        return 0
    (have,) = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(have)


def migrate(
    db: sqlite3.Connection, where: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Bring the database up to the newest migration; return what was applied.

    ``db`` must be in autocommit mode (``isolation_level=None``); the upgrade is
    one ``BEGIN IMMEDIATE`` transaction, so a crash leaves the previous schema.
    """
    latest = migrations[-1].version
    applied: list[int] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TEXT NOT NULL "
            "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        have = current_version(db)
        if have > latest:
            raise SchemaError(
                f"database {where} is at schema version {have}, newer than this registry knows "
                f"({latest}): upgrade the registry before pointing it at this database"
            )
        for m in migrations:
            if m.version <= have:
                continue
            for statement in m.statements():
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                (m.version, m.description),
            )
            applied.append(m.version)
            log.info("%s: applied migration %d (%s)", where, m.version, m.description)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return applied
