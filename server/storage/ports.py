"""The storage ports: one small protocol per domain, implemented by every backend.

Domain code asks for the narrowest port it needs (the director a
``DirectorStore``, the encodings a ``EncodingStore`` ...); ``MetadataStore`` is
all of them, what a backend (``SqliteMetadataStore``, ``PgMetadataStore``)
implements. Blobs (content-addressed bytes) are their own port, ``BlobStore``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol

from server.storage.records import (
    AuditEntry,
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


class StorageError(Exception):
    """A storage operation failed; the message says what and where."""


class BlobNotFound(StorageError):
    pass


class BlobStore(Protocol):
    """Content-addressed bytes (model files, encodings), keyed by sha256."""

    def tempfile(self) -> tuple[int, Path]: ...
    def put_file(self, src: Path, sha256: str) -> None: ...
    def put_bytes(self, data: bytes) -> str: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def size(self, sha256: str) -> int: ...
    def exists(self, sha256: str) -> bool: ...
    def quarantine(self, sha256: str) -> None:
        """Take a blob that fails its sha256 out of the store (kept aside where the backend can)."""
        ...

    def delete(self, sha256: str) -> None: ...
    def list_blobs(self) -> Iterator[tuple[str, int, float]]:
        """Every blob as (sha256, size, stored at: seconds since the epoch)."""
        ...


class ModelStore(Protocol):
    """Published model versions (``server/publishing.py``)."""

    def add_model(self, rec: ModelRecord) -> None: ...
    def get_model(self, name: str, version: str) -> ModelRecord | None: ...
    def list_models(self, name: str | None = None) -> list[ModelRecord]: ...
    def models_by_sha256(self, sha256: str) -> list[ModelRecord]: ...


class SigningLocks(Protocol):
    def signing_lock(self, scope: str = "") -> AbstractContextManager[None]:
        """Held while TUF metadata of ``scope`` ("" = the repository) is signed:
        one signer at a time, over every replica."""
        ...


class TufMetadataStore(SigningLocks, Protocol):
    """The image repository's signed metadata history (``server/signing/``)."""

    def put_tuf_metadata(self, role: str, version: int, data: bytes) -> None: ...
    def get_tuf_metadata(self, role: str, version: int | None = None) -> bytes | None: ...
    def tuf_versions(self) -> dict[str, int]:
        """{role: latest version}, in one query (the signed repository caches by version)."""
        ...


class EncodingStore(Protocol):
    """The index of stored transport encodings (``server/encodings.py``)."""

    def put_encodings(self, name: str, version: str, encodings: list[EncodingRecord]) -> None:
        """Replace the stored encodings of ``name`` ``version`` (at most one per base)."""
        ...

    def list_encodings(self, name: str, version: str) -> list[EncodingRecord]: ...
    def encoding_by_blob(self, blob_sha256: str) -> EncodingRecord | None: ...


class ReleaseStore(Protocol):
    """The release log (``server/releases.py``): releases, allowed downgrades, re-releases."""

    def add_release(self, rec: ReleaseRecord) -> None: ...
    def list_releases(self, name: str | None = None) -> list[ReleaseRecord]:
        """Oldest first."""
        ...


class ReportStore(Protocol):
    """What vehicles reported, step by step."""

    def add_report(self, rep: ReportRecord) -> None: ...
    def list_reports(self, vehicle_id: str | None = None) -> list[ReportRecord]: ...
    def list_reports_for_model(self, name: str, version: str) -> list[ReportRecord]: ...


class FleetStore(Protocol):
    """The vehicle inventory, learned from check-ins (``server/fleet.py``)."""

    def upsert_vehicle(self, rec: VehicleRecord) -> None: ...
    def get_vehicle(self, vehicle_id: str) -> VehicleRecord | None: ...
    def list_vehicles(self) -> list[VehicleRecord]: ...


class CampaignStore(Protocol):
    """Rollout campaigns: definitions, members, append-only events (``server/campaigns/``)."""

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


class DirectorStore(SigningLocks, Protocol):
    """The director (``server/director.py``): per-vehicle TUF chains, assignments, manifests."""

    def put_vehicle_metadata(
        self, vehicle_id: str, role: str, version: int, data: bytes
    ) -> None: ...
    def get_vehicle_metadata(
        self, vehicle_id: str, role: str, version: int | None = None
    ) -> bytes | None: ...
    def set_assignment(self, vehicle_id: str, name: str, version: str | None) -> None: ...
    def get_assignments(self, vehicle_id: str) -> dict[str, str]: ...
    def get_manifest(self, vehicle_id: str) -> ManifestRecord | None: ...
    def accept_manifest(self, rec: ManifestRecord) -> bool: ...


class AuditStore(Protocol):
    """The append-only audit log (``server/audit.py``): append and read, no update, no delete."""

    def append_audit(self, entry: AuditEntry) -> int: ...
    def list_audit(
        self, limit: int = 100, actor: str = "", action: str = "", before_seq: int | None = None
    ) -> list[AuditEntry]:
        """Newest first; only entries older than ``before_seq`` when given (paging)."""
        ...


class MetadataStore(
    ModelStore,
    AuditStore,
    TufMetadataStore,
    EncodingStore,
    ReleaseStore,
    ReportStore,
    FleetStore,
    CampaignStore,
    DirectorStore,
    Protocol,
):
    """Every port: what a backend implements."""

    def close(self) -> None: ...
