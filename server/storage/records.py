"""What the registry keeps: immutable records, one per fact, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    extra: dict[str, Any] = field(default_factory=dict)


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
    # Who caused it: the operator's certificate identity (``publisher:ml-team``) for
    # create/pause/resume/abort/rollback; "registry" for what the rollout derived itself.
    actor: str = ""


@dataclass(frozen=True)
class ManifestRecord:
    """The director's last verified version manifest of a vehicle (``server/director.py``)."""

    vehicle_id: str
    hardware_id: str = ""
    counter: int = 0  # strictly increasing: a replayed or reordered manifest is refused
    manifest_json: str = "{}"
    attacks: tuple[str, ...] = ()
    received_at: str = ""


# EncodingRecord's field order, for SELECTs that build one from a row.
@dataclass(frozen=True)
class ReleaseRecord:
    """One entry of the release log (``server/releases.py``): who decided what cars may run, and why."""

    name: str
    version: str
    kind: str  # "release" (to ``scope``), "downgrade" (published below the highest), "rerelease"
    scope: str  # "fleet", "tag:K=V", "vehicle:ID"; "" for the other kinds
    actor: str  # the publisher certificate's name; "" when unknown (plain text, or in-process)
    reason: str
    at: float  # seconds since the epoch


ENCODING_COLUMNS = "name, version, codec, base_sha256, blob_sha256, length"


@dataclass(frozen=True)
class AuditEntry:
    """One change made through the registry's APIs (``server/audit.py``); never updated or deleted."""

    at: float  # seconds since the epoch, the registry's clock
    actor: str  # role:name from the client certificate
    action: str  # publish, campaign.create, ...
    args: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # the store's order; 0 until stored
