"""Fixtures for the scale-out tests: a real PostgreSQL, one fresh schema per test.

The server is found through ``OTA_TEST_PG_DSN`` (default: the project machine's
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema
with a random name, selected through ``search_path`` in the DSN, and dropped
afterwards, so runs never see each other's rows. Without a server the
PostgreSQL tests skip, saying why.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.pg import DEFAULT_DSN, with_schema


@pytest.fixture(scope="session")
def pg_server_dsn() -> str:
    """A reachable PostgreSQL server's DSN, or a skip that says why there is none."""
    dsn = os.environ.get("OTA_TEST_PG_DSN", DEFAULT_DSN)
    try:
        import psycopg
    except ImportError as e:
        pytest.skip(f"PostgreSQL tests need psycopg (the 'pg' extra): {e}")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL server at {dsn} (set OTA_TEST_PG_DSN): {str(e).strip()}")
    return dsn


@dataclass
class PgSchema:
    name: str
    dsn: str  # selects the schema through search_path


@pytest.fixture
def pg_schema(pg_server_dsn: str) -> Iterator[PgSchema]:
    """A fresh, empty schema for one test, dropped afterwards."""
    import psycopg

    name = f"ota_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield PgSchema(name, with_schema(pg_server_dsn, name))
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@dataclass
class Stores:
    engine: str
    meta: server.storage.MetadataStore  # type: ignore[name-defined]  # noqa: F821
    blobs: server.storage.BlobStore  # type: ignore[name-defined]  # noqa: F821
    open_another: object  # () -> MetadataStore on the same data: a second replica


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The same storage contract, once per engine."""
    opened = []
    if request.param == "sqlite":
        from server.storage import FileBlobStore, SqliteMetadataStore

        def another():
            s = SqliteMetadataStore(tmp_path / "registry.sqlite3")
            opened.append(s)
            return s

        meta = another()
        blobs = FileBlobStore(tmp_path / "blobs")
    else:
        schema: PgSchema = request.getfixturevalue("pg_schema")
        from server.storage.postgres import PgMetadataStore, open_postgres

        meta, blobs = open_postgres(schema.dsn, spool_dir=tmp_path / "spool")
        opened.append(meta)

        def another():
            s = PgMetadataStore.connect(schema.dsn)
            opened.append(s)
            return s

    try:
        yield Stores(request.param, meta, blobs, another)
    finally:
        for s in opened:
            s.close()


@pytest.fixture
def pg_registry(
    pg_schema: PgSchema, keys_dir: Path, tmp_path: Path, pki: Path
) -> Iterator[server.registry.Registry]:  # noqa: F821
    """An in-process registry on the test's PostgreSQL schema (a publisher's or operator's view)."""
    from server.registry import Registry

    reg = Registry.open(
        tmp_path / "spool", keys_dir, db=pg_schema.dsn, ca_pem=(pki / "ca.pem").read_bytes()
    )
    try:
        yield reg
    finally:
        reg.store.close()


def tls_args(pki: Path, insecure: bool = False) -> list[str]:
    """``ota registry serve`` options: the registry's certificate (mutual TLS), or explicit
    plain text that still verifies vehicle manifests against the fleet CA."""
    if insecure:
        return ["--insecure", "--ca", str(pki / "ca.pem")]
    return [
        "--ca",
        str(pki / "ca.pem"),
        "--cert",
        str(pki / "server.pem"),
        "--key",
        str(pki / "server.key"),
    ]


@pytest.fixture
def cluster(pg_schema: PgSchema, keys_dir: Path, pki: Path):
    """Factory: ``cluster(n)`` starts n ``ota registry serve`` processes on the schema (mutual TLS)."""
    from testkit.cluster import start_replicas, stop_all

    started = []

    def start(n: int, insecure: bool = False):
        replicas = start_replicas(n, pg_schema.dsn, keys_dir, extra_args=tls_args(pki, insecure))
        started.extend(replicas)
        return replicas

    yield start
    stop_all(started)


def vehicle_config(
    pki: Path, keys_dir: Path, address: str, state: Path, vehicle_id: str, insecure: bool = False
) -> vehicle_agent.agent.AgentConfig:  # type: ignore[name-defined]  # noqa: F821
    """An agent's configuration with its certificate and both trust roots."""
    from otawire import tls
    from vehicle_agent.agent import AgentConfig

    return AgentConfig(
        registry=address,
        state_dir=state,
        vehicle_id=vehicle_id,
        trusted_root=keys_dir / "root.json",
        director_root=keys_dir / "director-root.json",
        identity=tls.ensure(pki, "vehicle", vehicle_id),
        insecure=insecure,
    )
