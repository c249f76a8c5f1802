"""Registry storage: what the registry keeps, behind small ports.

- ``records.py``: the immutable records (one per fact);
- ``ports.py``: one protocol per domain (models, TUF metadata, encodings, reports,
  fleet, campaigns, director) plus ``BlobStore``; ``MetadataStore`` is all of them;
- the embedded backend: ``sqlite*.py`` (metadata) and ``files.py`` (blobs);
- the shared backend for replicas: ``postgres*.py`` (metadata and blobs), needing
  the ``pg`` extra, imported only when a ``postgresql://`` URL is given.

Both backends migrate their schema on open (``sqlite_schema.py``,
``postgres_schema.py``). The names below are the package's public face.
"""

from __future__ import annotations

from pathlib import Path

from server.storage.files import FileBlobStore
from server.storage.migrations import SchemaError
from server.storage.ports import (
    BlobNotFound,
    BlobStore,
    CampaignStore,
    DirectorStore,
    EncodingStore,
    FleetStore,
    MetadataStore,
    ModelStore,
    ReleaseStore,
    ReportStore,
    StorageError,
    TufMetadataStore,
)
from server.storage.records import (
    CampaignEventRecord,
    CampaignMember,
    CampaignRecord,
    EncodingRecord,
    ManifestRecord,
    ModelRecord,
    ReleaseRecord,
    ReportRecord,
    VehicleRecord,
)
from server.storage.sqlite import SqliteMetadataStore

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "CampaignEventRecord",
    "CampaignMember",
    "CampaignRecord",
    "CampaignStore",
    "DirectorStore",
    "EncodingRecord",
    "EncodingStore",
    "FileBlobStore",
    "FleetStore",
    "ManifestRecord",
    "MetadataStore",
    "ModelRecord",
    "ModelStore",
    "ReleaseRecord",
    "ReleaseStore",
    "ReportRecord",
    "ReportStore",
    "SchemaError",
    "SqliteMetadataStore",
    "StorageError",
    "TufMetadataStore",
    "VehicleRecord",
    "is_postgres_url",
    "open_storage",
]


def is_postgres_url(db: str | None) -> bool:
    return bool(db) and str(db).split("://", 1)[0] in ("postgresql", "postgres")


def open_storage(data_dir: Path | None, db: str | None = None) -> tuple[MetadataStore, BlobStore]:
    """The embedded default (SQLite + a blob directory under ``data_dir``), or, with
    ``db`` a ``postgresql://`` URL, that database (``data_dir``, if given, only spools uploads)."""
    if db:
        if not is_postgres_url(db):
            raise StorageError(
                f"--db {db!r}: only postgresql://… URLs are supported (SQLite is the default)"
            )
        # Imported here: psycopg is an optional extra that the embedded default must not need.
        from server.storage.postgres import open_postgres

        return open_postgres(db, spool_dir=Path(data_dir) / "spool" if data_dir else None)
    if data_dir is None:
        raise StorageError("the embedded SQLite store needs a data directory")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteMetadataStore(data_dir / "registry.sqlite3"), FileBlobStore(data_dir / "blobs")
