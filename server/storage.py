"""Registry storage: what the registry keeps, behind small interfaces.

Two concerns, two interfaces:
- ``BlobStore``: content-addressed bytes (model files, encodings), keyed by
  sha256. The embedded default is a directory on disk, written crash-safely.
- ``MetadataStore``: model versions, signed TUF metadata history and vehicle
  reports. The embedded default is SQLite; a scale-out engine implements the
  same protocol.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ContextManager, Protocol

from modelpack.fsio import fsync_dir

log = logging.getLogger(__name__)


class StorageError(Exception):
    """A storage operation failed; the message says what and where."""


class BlobNotFound(StorageError):
    pass


@dataclass(frozen=True)
class ModelRecord:
    """One immutable model version: the exact bytes are its identity."""

    name: str
    version: str
    sha256: str
    length: int
    target_path: str
    hardware_ids: tuple[str, ...] = ()
    metadata_json: str = "{}"
    published_at: str = ""


@dataclass(frozen=True)
class EncodingRecord:
    """A stored transport encoding of a model version: stand-alone, or a delta
    from the version with ``base_sha256``. Its bytes are the blob ``blob_sha256``."""

    name: str
    version: str
    codec: str
    base_sha256: str  # "" for a stand-alone encoding
    blob_sha256: str
    length: int


@dataclass(frozen=True)
class ReportRecord:
    """One step a vehicle reported (downloading, installed, failed, ...)."""

    vehicle_id: str
    name: str
    version: str
    status: str
    reason: str = ""
    hardware_id: str = ""
    sha256: str = ""
    from_version: str = ""
    encoding: str = ""
    bytes_downloaded: int = 0
    duration_s: float = 0.0
    active_version: str = ""
    received_at: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VehicleRecord:
    """What the inventory knows about a vehicle, learned from its check-ins."""

    vehicle_id: str
    hardware_id: str = ""
    tags: tuple[str, ...] = ()
    installed: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (version, sha256)
    wanted: tuple[str, ...] = ()  # empty = every model
    first_seen: float = 0.0  # seconds since the epoch
    last_seen: float = 0.0


@dataclass(frozen=True)
class CampaignRecord:
    """A rollout campaign's immutable definition; its state lives in events and reports."""

    campaign_id: str
    spec_json: str
    created_at: float


@dataclass(frozen=True)
class CampaignMember:
    """A vehicle's place in a campaign: its wave, and when it was first offered the version."""

    campaign_id: str
    vehicle_id: str
    wave: int
    offered_at: float | None = None


@dataclass(frozen=True)
class CampaignEventRecord:
    """One entry of a campaign's append-only log (created, wave_opened, paused, ...)."""

    campaign_id: str
    at: float
    kind: str
    wave: int = -1
    detail: str = ""


@dataclass(frozen=True)
class ManifestRecord:
    """The director's last verified version manifest of a vehicle (``server/director.py``)."""

    vehicle_id: str
    hardware_id: str = ""
    counter: int = 0  # strictly increasing: a replayed or reordered manifest is refused
    manifest_json: str = "{}"
    attacks: tuple[str, ...] = ()
    received_at: str = ""


class BlobStore(Protocol):
    def tempfile(self) -> tuple[int, Path]: ...
    def put_file(self, src: Path, sha256: str) -> None: ...
    def put_bytes(self, data: bytes) -> str: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def size(self, sha256: str) -> int: ...
    def exists(self, sha256: str) -> bool: ...


class MetadataStore(Protocol):
    def add_model(self, rec: ModelRecord) -> None: ...
    def get_model(self, name: str, version: str) -> ModelRecord | None: ...
    def list_models(self, name: str | None = None) -> list[ModelRecord]: ...
    def models_by_sha256(self, sha256: str) -> list[ModelRecord]: ...
    def put_tuf_metadata(self, role: str, version: int, data: bytes) -> None: ...
    def get_tuf_metadata(self, role: str, version: int | None = None) -> bytes | None: ...
    def tuf_versions(self) -> dict[str, int]:
        """{role: latest version} of the image repository, in one query."""
        ...
    def put_encodings(self, name: str, version: str, encodings: list[EncodingRecord]) -> None:
        """Replace the stored encodings of ``name`` ``version`` (at most one per base)."""
        ...
    def list_encodings(self, name: str, version: str) -> list[EncodingRecord]: ...
    def encoding_by_blob(self, blob_sha256: str) -> EncodingRecord | None: ...
    def add_report(self, rep: ReportRecord) -> None: ...
    def list_reports(self, vehicle_id: str | None = None) -> list[ReportRecord]: ...
    def list_reports_for_model(self, name: str, version: str) -> list[ReportRecord]: ...
    # Fleet inventory and rollout campaigns (server/campaigns.py).
    def upsert_vehicle(self, rec: VehicleRecord) -> None: ...
    def get_vehicle(self, vehicle_id: str) -> VehicleRecord | None: ...
    def list_vehicles(self) -> list[VehicleRecord]: ...
    def add_campaign(
        self, rec: CampaignRecord, members: list[CampaignMember], events: list[CampaignEventRecord]
    ) -> None: ...
    def get_campaign(self, campaign_id: str) -> CampaignRecord | None: ...
    def list_campaigns(self) -> list[CampaignRecord]: ...
    def list_campaign_members(self, campaign_id: str) -> list[CampaignMember]: ...
    def memberships_of(self, vehicle_id: str) -> list[CampaignMember]: ...
    def mark_offered(self, campaign_id: str, vehicle_id: str, at: float) -> bool: ...
    def add_campaign_event(self, ev: CampaignEventRecord) -> None: ...
    def list_campaign_events(self, campaign_id: str) -> list[CampaignEventRecord]: ...
    # The director (server/director.py): per-vehicle TUF chains, assignments, manifests.
    def put_vehicle_metadata(self, vehicle_id: str, role: str, version: int, data: bytes) -> None: ...
    def get_vehicle_metadata(self, vehicle_id: str, role: str, version: int | None = None) -> bytes | None: ...
    def set_assignment(self, vehicle_id: str, name: str, version: str | None) -> None: ...
    def get_assignments(self, vehicle_id: str) -> dict[str, str]: ...
    def get_manifest(self, vehicle_id: str) -> ManifestRecord | None: ...
    def accept_manifest(self, rec: ManifestRecord) -> bool: ...
    def signing_lock(self, scope: str = "") -> ContextManager[None]:
        """Held while TUF metadata of ``scope`` ("" = the repository) is signed:
        one signer at a time, over every replica."""
        ...
    def close(self) -> None: ...


class FileBlobStore:
    """Blobs as files named by their sha256 under ``root/ab/abcdef…``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise BlobNotFound(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def tempfile(self) -> tuple[int, Path]:
        """A scratch file on the same filesystem, for spooling uploads."""
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        return fd, Path(name)

    def put_file(self, src: Path, sha256: str) -> None:
        """Move a fully written, already hashed file into the store."""
        dest = self.path(sha256)
        dest.parent.mkdir(exist_ok=True)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        if dest.exists():
            os.unlink(src)
            return
        os.replace(src, dest)
        fsync_dir(dest.parent)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if self.exists(sha):
            return sha
        fd, tmp = self.tempfile()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.put_file(tmp, sha)
        return sha

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in the store at {self.root}") from None

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in the store at {self.root}") from None

    def exists(self, sha256: str) -> bool:
        try:
            return self.path(sha256).exists()
        except BlobNotFound:
            return False


_SCHEMA = """
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


# EncodingRecord's field order, for SELECTs that build one from a row.
ENCODING_COLUMNS = "name, version, codec, base_sha256, blob_sha256, length"


class SqliteMetadataStore:
    """The embedded default: one SQLite file in WAL mode, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._signing = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def signing_lock(self, scope: str = "") -> Iterator[None]:
        # One process owns a SQLite file, so an in-process lock is enough (one
        # for every scope); a separate one, so readers are not held up meanwhile.
        with self._signing:
            yield

    # -- models ---------------------------------------------------------------
    def add_model(self, rec: ModelRecord) -> None:
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO models VALUES (?,?,?,?,?,?,?,?)",
                    (
                        rec.name,
                        rec.version,
                        rec.sha256,
                        rec.length,
                        rec.target_path,
                        json.dumps(list(rec.hardware_ids)),
                        rec.metadata_json,
                        rec.published_at,
                    ),
                )
        except sqlite3.IntegrityError as e:
            raise StorageError(f"model {rec.name} {rec.version} already exists") from e

    @staticmethod
    def _model(row: tuple) -> ModelRecord:
        return ModelRecord(
            name=row[0],
            version=row[1],
            sha256=row[2],
            length=row[3],
            target_path=row[4],
            hardware_ids=tuple(json.loads(row[5])),
            metadata_json=row[6],
            published_at=row[7],
        )

    def get_model(self, name: str, version: str) -> ModelRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM models WHERE name=? AND version=?", (name, version)).fetchone()
        return self._model(row) if row else None

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        with self._lock:
            if name:
                rows = self._db.execute("SELECT * FROM models WHERE name=? ORDER BY published_at", (name,)).fetchall()
            else:
                rows = self._db.execute("SELECT * FROM models ORDER BY name, published_at").fetchall()
        return [self._model(r) for r in rows]

    def models_by_sha256(self, sha256: str) -> list[ModelRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM models WHERE sha256=?", (sha256,)).fetchall()
        return [self._model(r) for r in rows]

    # -- TUF metadata history ---------------------------------------------------
    def put_tuf_metadata(self, role: str, version: int, data: bytes) -> None:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO tuf_metadata VALUES (?,?,?)", (role, version, data))
        except sqlite3.IntegrityError as e:
            raise StorageError(f"TUF {role} version {version} already exists") from e

    def tuf_versions(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT role, MAX(version) FROM tuf_metadata GROUP BY role").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def get_tuf_metadata(self, role: str, version: int | None = None) -> bytes | None:
        with self._lock:
            if version is None:
                row = self._db.execute(
                    "SELECT data FROM tuf_metadata WHERE role=? ORDER BY version DESC LIMIT 1", (role,)
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT data FROM tuf_metadata WHERE role=? AND version=?", (role, version)
                ).fetchone()
        return bytes(row[0]) if row else None

    # -- transport encodings --------------------------------------------------------
    def put_encodings(self, name: str, version: str, encodings: list[EncodingRecord]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM encodings WHERE name=? AND version=?", (name, version))
            db.executemany(
                "INSERT INTO encodings (name, version, base_sha256, codec, blob_sha256, length) VALUES (?,?,?,?,?,?)",
                [(name, version, e.base_sha256, e.codec, e.blob_sha256, e.length) for e in encodings],
            )

    def list_encodings(self, name: str, version: str) -> list[EncodingRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE name=? AND version=? ORDER BY base_sha256",
                (name, version),
            ).fetchall()
        return [EncodingRecord(*r) for r in rows]

    def encoding_by_blob(self, blob_sha256: str) -> EncodingRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {ENCODING_COLUMNS} FROM encodings WHERE blob_sha256=? LIMIT 1", (blob_sha256,)
            ).fetchone()
        return EncodingRecord(*row) if row else None

    # -- vehicle reports ----------------------------------------------------------
    def add_report(self, rep: ReportRecord) -> None:
        body = {k: v for k, v in rep.__dict__.items() if k != "received_at"}
        with self._tx() as db:
            db.execute(
                "INSERT INTO reports (vehicle_id, name, version, status, body) VALUES (?,?,?,?,?)",
                (rep.vehicle_id, rep.name, rep.version, rep.status, json.dumps(body)),
            )

    def list_reports(self, vehicle_id: str | None = None) -> list[ReportRecord]:
        with self._lock:
            if vehicle_id:
                rows = self._db.execute(
                    "SELECT body, received_at FROM reports WHERE vehicle_id=? ORDER BY id", (vehicle_id,)
                ).fetchall()
            else:
                rows = self._db.execute("SELECT body, received_at FROM reports ORDER BY id").fetchall()
        return [ReportRecord(**{**json.loads(b), "received_at": t}) for b, t in rows]

    def list_reports_for_model(self, name: str, version: str) -> list[ReportRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body, received_at FROM reports WHERE name=? AND version=? ORDER BY id", (name, version)
            ).fetchall()
        return [ReportRecord(**{**json.loads(b), "received_at": t}) for b, t in rows]

    # -- fleet inventory ------------------------------------------------------------
    def upsert_vehicle(self, rec: VehicleRecord) -> None:
        installed = json.dumps({k: list(v) for k, v in sorted(rec.installed.items())})
        with self._tx() as db:
            db.execute(
                "INSERT INTO vehicles VALUES (?,?,?,?,?,?,?) ON CONFLICT (vehicle_id) DO UPDATE SET "
                "hardware_id=excluded.hardware_id, tags=excluded.tags, installed=excluded.installed, "
                "wanted=excluded.wanted, last_seen=excluded.last_seen",
                (rec.vehicle_id, rec.hardware_id, json.dumps(list(rec.tags)), installed,
                 json.dumps(list(rec.wanted)), rec.first_seen, rec.last_seen),
            )

    @staticmethod
    def _vehicle(row: tuple) -> VehicleRecord:
        return VehicleRecord(
            vehicle_id=row[0],
            hardware_id=row[1],
            tags=tuple(json.loads(row[2])),
            installed={k: (v[0], v[1]) for k, v in json.loads(row[3]).items()},
            wanted=tuple(json.loads(row[4])),
            first_seen=row[5],
            last_seen=row[6],
        )

    def get_vehicle(self, vehicle_id: str) -> VehicleRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM vehicles WHERE vehicle_id=?", (vehicle_id,)).fetchone()
        return self._vehicle(row) if row else None

    def list_vehicles(self) -> list[VehicleRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM vehicles ORDER BY vehicle_id").fetchall()
        return [self._vehicle(r) for r in rows]

    # -- rollout campaigns ------------------------------------------------------------
    def add_campaign(
        self, rec: CampaignRecord, members: list[CampaignMember], events: list[CampaignEventRecord]
    ) -> None:
        """Definition, membership and first events in one transaction: all or nothing."""
        try:
            with self._tx() as db:
                db.execute("INSERT INTO campaigns VALUES (?,?,?)", (rec.campaign_id, rec.spec_json, rec.created_at))
                db.executemany(
                    "INSERT INTO campaign_members VALUES (?,?,?,?)",
                    [(m.campaign_id, m.vehicle_id, m.wave, m.offered_at) for m in members],
                )
                for ev in events:
                    self._insert_event(db, ev)
        except sqlite3.IntegrityError as e:
            raise StorageError(f"campaign {rec.campaign_id} already exists or lists a vehicle twice: {e}") from e

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM campaigns WHERE campaign_id=?", (campaign_id,)).fetchone()
        return CampaignRecord(*row) if row else None

    def list_campaigns(self) -> list[CampaignRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM campaigns ORDER BY created_at, campaign_id").fetchall()
        return [CampaignRecord(*r) for r in rows]

    def list_campaign_members(self, campaign_id: str) -> list[CampaignMember]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM campaign_members WHERE campaign_id=? ORDER BY wave, vehicle_id", (campaign_id,)
            ).fetchall()
        return [CampaignMember(*r) for r in rows]

    def memberships_of(self, vehicle_id: str) -> list[CampaignMember]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM campaign_members WHERE vehicle_id=?", (vehicle_id,)).fetchall()
        return [CampaignMember(*r) for r in rows]

    def mark_offered(self, campaign_id: str, vehicle_id: str, at: float) -> bool:
        """Record the first offer; False when it was already recorded (by any replica)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE campaign_members SET offered_at=? WHERE campaign_id=? AND vehicle_id=? AND offered_at IS NULL",
                (at, campaign_id, vehicle_id),
            )
        return cur.rowcount == 1

    @staticmethod
    def _insert_event(db: sqlite3.Connection, ev: CampaignEventRecord) -> None:
        db.execute(
            "INSERT INTO campaign_events (campaign_id, at, kind, wave, detail) VALUES (?,?,?,?,?)",
            (ev.campaign_id, ev.at, ev.kind, ev.wave, ev.detail),
        )

    def add_campaign_event(self, ev: CampaignEventRecord) -> None:
        with self._tx() as db:
            self._insert_event(db, ev)

    def list_campaign_events(self, campaign_id: str) -> list[CampaignEventRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, at, kind, wave, detail FROM campaign_events WHERE campaign_id=? ORDER BY id",
                (campaign_id,),
            ).fetchall()
        return [CampaignEventRecord(*r) for r in rows]

    # -- the director ----------------------------------------------------------------
    def put_vehicle_metadata(self, vehicle_id: str, role: str, version: int, data: bytes) -> None:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO vehicle_metadata VALUES (?,?,?,?)", (vehicle_id, role, version, data))
        except sqlite3.IntegrityError as e:
            raise StorageError(f"director {role} version {version} for {vehicle_id!r} already exists") from e

    def get_vehicle_metadata(self, vehicle_id: str, role: str, version: int | None = None) -> bytes | None:
        with self._lock:
            if version is None:
                row = self._db.execute(
                    "SELECT data FROM vehicle_metadata WHERE vehicle_id=? AND role=? ORDER BY version DESC LIMIT 1",
                    (vehicle_id, role),
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT data FROM vehicle_metadata WHERE vehicle_id=? AND role=? AND version=?",
                    (vehicle_id, role, version),
                ).fetchone()
        return bytes(row[0]) if row else None

    def set_assignment(self, vehicle_id: str, name: str, version: str | None) -> None:
        with self._tx() as db:
            if version is None:
                db.execute("DELETE FROM assignments WHERE vehicle_id=? AND name=?", (vehicle_id, name))
            else:
                db.execute("INSERT OR REPLACE INTO assignments VALUES (?,?,?)", (vehicle_id, name, version))

    def get_assignments(self, vehicle_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT name, version FROM assignments WHERE vehicle_id=?", (vehicle_id,)).fetchall()
        return dict(rows)

    def get_manifest(self, vehicle_id: str) -> ManifestRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM vehicle_manifests WHERE vehicle_id=?", (vehicle_id,)).fetchone()
        if row is None:
            return None
        return ManifestRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5])

    def accept_manifest(self, rec: ManifestRecord) -> bool:
        """Store ``rec`` only if its counter is above the stored one (atomic compare-and-set)."""
        with self._tx() as db:
            row = db.execute("SELECT counter FROM vehicle_manifests WHERE vehicle_id=?", (rec.vehicle_id,)).fetchone()
            if row is not None and row[0] >= rec.counter:
                return False
            db.execute(
                "INSERT OR REPLACE INTO vehicle_manifests (vehicle_id, hardware_id, counter, manifest_json, attacks) "
                "VALUES (?,?,?,?,?)",
                (rec.vehicle_id, rec.hardware_id, rec.counter, rec.manifest_json, json.dumps(list(rec.attacks))),
            )
        return True
