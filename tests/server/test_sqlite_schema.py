"""The embedded SQLite store migrates its schema like the PostgreSQL one: versioned, on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.storage import ModelRecord, SchemaError, SqliteMetadataStore
from server.storage.records import CampaignEventRecord
from server.storage.sqlite_schema import _V1, MIGRATIONS, current_version


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_a_new_database_records_every_migration(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "r.sqlite3")
    store.close()
    assert _versions(tmp_path / "r.sqlite3") == [m.version for m in MIGRATIONS]


def test_a_database_from_before_migrations_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # what an older registry created: the schema, no versions
        db.executescript(_V1)
        db.execute(
            "INSERT INTO models VALUES ('m','1.0.0','ab',1,'m/1.0.0.onnx','[]','{}','2026-01-01T00:00:00Z')"
        )
        db.execute(
            "INSERT INTO campaign_events (campaign_id, at, kind, wave, detail) "
            "VALUES ('c1', 1.0, 'paused', 0, '{}')"
        )
    with sqlite3.connect(path) as db:
        assert current_version(db) == 0
    store = SqliteMetadataStore(path)
    try:
        assert store.get_model("m", "1.0.0") == ModelRecord(
            "m", "1.0.0", "ab", 1, "m/1.0.0.onnx", (), "{}", "2026-01-01T00:00:00Z"
        )
        # Events from before actors were recorded read back with an empty one (migration 4).
        assert store.list_campaign_events("c1") == [
            CampaignEventRecord("c1", 1.0, "paused", 0, "{}")
        ]
        store.add_campaign_event(CampaignEventRecord("c1", 2.0, "resumed", 0, "{}", "publisher:a"))
        assert store.list_campaign_events("c1")[-1].actor == "publisher:a"
    finally:
        store.close()
    assert _versions(path) == [m.version for m in MIGRATIONS]


def test_a_database_newer_than_the_code_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    SqliteMetadataStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (999, 'from the future')"
        )
    with pytest.raises(SchemaError, match="version 999, newer than this registry knows"):
        SqliteMetadataStore(path)
