"""Versioned schema migrations for the PostgreSQL backend, applied on start.

Each migration is a numbered block of SQL, applied once, in order, with its
row in ``schema_migrations``; all pending migrations apply in one transaction
(PostgreSQL DDL is transactional, so a crash mid-upgrade leaves the previous
schema intact).
Replicas starting at the same moment serialise on an advisory lock scoped to
the current schema, so exactly one of them upgrades and the others find the
work done. A database whose schema is newer than this code refuses to open:
an old replica must not write into tables it does not understand.

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg

from server.storage.migrations import Migration, SchemaError

log = logging.getLogger(__name__)

# Advisory-lock class ids (first key of the two-key form); the second key is a
# hash of the schema name, so test runs in separate schemas never contend.
LOCK_MIGRATIONS = 0x07A1
LOCK_TUF_SIGNING = 0x07A2


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "models, TUF metadata history, vehicle reports, content-addressed blobs",
        """
        CREATE TABLE models (
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            length BIGINT NOT NULL,
            target_path TEXT NOT NULL,
            hardware_ids TEXT[] NOT NULL,
            metadata_json TEXT NOT NULL,
            published_at TEXT NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE INDEX models_sha256 ON models (sha256);
        CREATE TABLE tuf_metadata (
            role TEXT NOT NULL,
            version INTEGER NOT NULL CHECK (version >= 1),
            data BYTEA NOT NULL,
            signed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (role, version)
        );
        CREATE TABLE reports (
            id BIGSERIAL PRIMARY KEY,
            vehicle_id TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            status TEXT NOT NULL,
            body JSONB NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX reports_vehicle ON reports (vehicle_id, id);
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            length BIGINT NOT NULL CHECK (length >= 0),
            chunk_size INTEGER NOT NULL CHECK (chunk_size > 0),
            stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE blob_chunks (
            sha256 TEXT NOT NULL,
            idx INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (sha256, idx)
        );
        -- Models are already dense or compressed: pglz would burn CPU for
        -- little, and uncompressed out-of-line storage lets reads slice.
        ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        """,
    ),
    Migration(
        2,
        "transport encodings of model versions (stand-alone and deltas)",
        """
        CREATE TABLE encodings (
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            base_sha256 TEXT NOT NULL,
            codec TEXT NOT NULL,
            blob_sha256 TEXT NOT NULL,
            length BIGINT NOT NULL,
            PRIMARY KEY (name, version, base_sha256)
        );
        CREATE INDEX encodings_blob ON encodings (blob_sha256);
        """,
    ),
    Migration(
        3,
        "fleet inventory and rollout campaigns (members, append-only events)",
        """
        CREATE INDEX reports_model ON reports (name, version, id);
        CREATE TABLE vehicles (
            vehicle_id TEXT PRIMARY KEY,
            hardware_id TEXT NOT NULL,
            tags TEXT[] NOT NULL,
            installed JSONB NOT NULL,
            wanted TEXT[] NOT NULL,
            first_seen DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE campaigns (
            campaign_id TEXT PRIMARY KEY,
            spec TEXT NOT NULL,  -- kept verbatim: the spec's own JSON, not re-serialised
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE campaign_members (
            campaign_id TEXT NOT NULL,
            vehicle_id TEXT NOT NULL,
            wave INTEGER NOT NULL,
            offered_at DOUBLE PRECISION,
            PRIMARY KEY (campaign_id, vehicle_id)
        );
        CREATE INDEX campaign_members_vehicle ON campaign_members (vehicle_id);
        CREATE TABLE campaign_events (
            id BIGSERIAL PRIMARY KEY,
            campaign_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            kind TEXT NOT NULL,
            wave INTEGER NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX campaign_events_campaign ON campaign_events (campaign_id, id);
        """,
    ),
    Migration(
        4,
        "director: per-vehicle TUF metadata, assignments, verified version manifests",
        """
        CREATE TABLE vehicle_metadata (
            vehicle_id TEXT NOT NULL,
            role TEXT NOT NULL,
            version INTEGER NOT NULL CHECK (version >= 1),
            data BYTEA NOT NULL,
            PRIMARY KEY (vehicle_id, role, version)
        );
        CREATE TABLE assignments (
            vehicle_id TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            PRIMARY KEY (vehicle_id, name)
        );
        CREATE TABLE vehicle_manifests (
            vehicle_id TEXT PRIMARY KEY,
            hardware_id TEXT NOT NULL,
            counter BIGINT NOT NULL,
            manifest_json TEXT NOT NULL,
            attacks JSONB NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        );
        """,
    ),
    Migration(
        5,
        "the append-only audit log",
        """
        CREATE TABLE audit_log (
            seq BIGSERIAL PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            args JSONB NOT NULL
        );
        CREATE INDEX audit_log_actor ON audit_log (actor, seq);
        """,
    ),
    Migration(
        6,
        "the release log: releases, allowed downgrades, re-releases (who, why)",
        """
        CREATE TABLE releases (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            kind TEXT NOT NULL,
            scope TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX releases_name ON releases (name, id);
        """,
    ),
    Migration(
        7,
        "campaign events carry their actor (the client certificate's identity)",
        "ALTER TABLE campaign_events ADD COLUMN actor TEXT NOT NULL DEFAULT ''",
    ),
)

LATEST = MIGRATIONS[-1].version


def utc_text(ts: datetime) -> str:
    """A TIMESTAMPTZ read back as text, in the form SQLite's strftime('%Y-%m-%dT%H:%M:%fZ') gives."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def current_version(conn: psycopg.Connection) -> int:
    """The schema version recorded in the database (0 when empty)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Bring the current schema up to the newest migration; return what was applied.

    ``conn`` must be in autocommit mode; the whole upgrade is one transaction.
    """
    latest = migrations[-1].version
    applied: list[int] = []
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (LOCK_MIGRATIONS,)
        )
        schema = conn.execute("SELECT current_schema()").fetchone()
        if schema is None or schema[0] is None:
            raise SchemaError("no current schema: the search_path names no existing schema")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version INTEGER PRIMARY KEY,
                   description TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        have = current_version(conn)
        if have > latest:
            raise SchemaError(
                f"database schema {schema[0]!r} is at version {have}, newer than this registry knows "
                f"({latest}): upgrade the registry before pointing it at this database"
            )
        for m in migrations:
            if m.version <= have:
                continue
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (m.version, m.description),
                )
            applied.append(m.version)
            log.info("schema %s: applied migration %d (%s)", schema[0], m.version, m.description)
    return applied
