"""PostgreSQL-only behaviour: migrations from empty, atomic signing, clear errors."""

from __future__ import annotations

import hashlib
import threading

import pytest

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (the 'pg' extra)")
pytestmark = pytest.mark.postgres

from server.storage import StorageError  # noqa: E402
from server.storage.postgres import PgDatabase, PgMetadataStore, open_postgres  # noqa: E402
from server.storage.postgres_schema import (  # noqa: E402
    LATEST,
    MIGRATIONS,
    Migration,
    SchemaError,
    current_version,
    migrate,
)


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {r[0] for r in rows}


def test_migrations_build_the_schema_from_empty_and_run_once(pg_schema) -> None:
    assert _tables(pg_schema.dsn) == set()
    with psycopg.connect(pg_schema.dsn, autocommit=True) as c:
        assert current_version(c) == 0
        assert migrate(c) == [m.version for m in MIGRATIONS]
        assert current_version(c) == LATEST
        assert migrate(c) == []  # a second start finds nothing to do
        recorded = c.execute(
            "SELECT version, description FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert [v for v, _ in recorded] == [m.version for m in MIGRATIONS]
    assert {
        "models",
        "tuf_metadata",
        "reports",
        "blobs",
        "blob_chunks",
        "schema_migrations",
    } <= _tables(pg_schema.dsn)


def test_an_upgrade_applies_only_the_new_migration_and_keeps_the_data(pg_schema) -> None:
    store = PgMetadataStore.connect(pg_schema.dsn)
    store.put_tuf_metadata("root", 1, b"root-v1")
    store.close()
    extra = Migration(
        LATEST + 1, "test: an index added later", "CREATE INDEX tuf_by_role ON tuf_metadata (role)"
    )
    with psycopg.connect(pg_schema.dsn, autocommit=True) as c:
        assert migrate(c, MIGRATIONS + (extra,)) == [LATEST + 1]
        assert current_version(c) == LATEST + 1
        assert c.execute("SELECT data FROM tuf_metadata WHERE role = 'root'").fetchone() == (
            b"root-v1",
        )


def test_a_failing_migration_leaves_the_previous_schema_intact(pg_schema) -> None:
    PgMetadataStore.connect(pg_schema.dsn).close()
    broken = Migration(
        LATEST + 1, "test: broken", "CREATE TABLE half_done (x INT); SELECT no_such_function()"
    )
    with psycopg.connect(pg_schema.dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrate(c, MIGRATIONS + (broken,))
        assert current_version(c) == LATEST
    assert "half_done" not in _tables(pg_schema.dsn)


def test_replicas_starting_together_migrate_exactly_once(pg_schema) -> None:
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(pg_schema.dsn, autocommit=True) as c:
                applied.append(migrate(c))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied, key=len) == [[], [], [], [m.version for m in MIGRATIONS]]


def test_a_database_newer_than_the_code_is_refused(pg_schema) -> None:
    PgMetadataStore.connect(pg_schema.dsn).close()
    with psycopg.connect(pg_schema.dsn, autocommit=True) as c:
        c.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (%s, 'from the future')",
            (LATEST + 5,),
        )
    with pytest.raises(
        SchemaError, match=f"at version {LATEST + 5}, newer than this registry knows"
    ):
        PgMetadataStore.connect(pg_schema.dsn)


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    dsn = "postgresql://ota:s3cret@127.0.0.1:1/none?connect_timeout=1"
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as e:
        PgDatabase(dsn, connect_timeout_s=1)
    assert "s3cret" not in str(e.value) and "port=1" in str(e.value)


def test_signing_writes_commit_together_or_not_at_all(pg_schema) -> None:
    writer, reader = PgMetadataStore.connect(pg_schema.dsn), PgMetadataStore.connect(pg_schema.dsn)
    try:
        with writer.signing_lock():
            writer.put_tuf_metadata("targets", 1, b"t1")
            writer.put_tuf_metadata("snapshot", 1, b"s1")
            assert writer.get_tuf_metadata("targets") == b"t1"  # the signer sees its own writes
            assert reader.get_tuf_metadata("targets") is None  # nobody else does, yet
        assert reader.get_tuf_metadata("snapshot") == b"s1"
        with pytest.raises(RuntimeError), writer.signing_lock():
            writer.put_tuf_metadata("targets", 2, b"t2")
            raise RuntimeError("signing failed half-way")
        assert reader.get_tuf_metadata("targets") == b"t1"
    finally:
        writer.close()
        reader.close()


def test_a_blob_that_does_not_match_its_name_is_not_stored(pg_schema, tmp_path) -> None:
    meta, blobs = open_postgres(pg_schema.dsn, spool_dir=tmp_path)
    try:
        fd, tmp = blobs.tempfile()
        with open(fd, "wb") as f:
            f.write(b"the bytes that arrived")
        claimed = hashlib.sha256(b"the bytes that were announced").hexdigest()
        with pytest.raises(StorageError, match=f"not the claimed {claimed}"):
            blobs.put_file(tmp, claimed)
        assert not blobs.exists(claimed)
        with psycopg.connect(pg_schema.dsn) as c:
            assert c.execute("SELECT count(*) FROM blob_chunks").fetchone() == (0,)
    finally:
        meta.close()


def test_signing_lock_scopes_are_independent_across_replicas(pg_schema) -> None:
    """One vehicle's director signing does not wait for another's; the same scope does."""
    a, b = PgMetadataStore.connect(pg_schema.dsn), PgMetadataStore.connect(pg_schema.dsn)
    try:
        entered = threading.Event()

        def other(scope: str) -> None:
            with b.signing_lock(scope):
                entered.set()

        with a.signing_lock("vehicle:car-1"):
            t = threading.Thread(target=other, args=("vehicle:car-2",))
            t.start()
            assert entered.wait(5), "a different scope must not wait"
            t.join()
            entered.clear()
            t = threading.Thread(target=other, args=("vehicle:car-1",))
            t.start()
            assert not entered.wait(0.3), "the same scope must wait for the holder"
        assert entered.wait(5)
        t.join()
    finally:
        a.close()
        b.close()
