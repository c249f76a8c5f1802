"""The registry: one object wiring the domains over one metadata store and one blob store.

- publishing (``publishing.py``): versions in, signed, encoded;
- delivery (``delivery.py``): offers at check-in, bytes of Download calls;
- the director (``director.py``): per-vehicle signed instructions;
- rollout campaigns (``campaigns/``): the rollout policy, when the store has campaigns;
- reports: recorded here, after the rollout policy has tagged them.

Servicers in ``server/service.py`` are thin adapters over this class.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from server.campaigns.manager import CampaignManager
from server.delivery import Delivery, DownloadStat, Offer, RolloutPolicy
from server.director import Director
from server.errors import InvalidArgument
from server.integrity import BlobGuard
from server.publishing import Publisher
from server.releases import FLEET, Releases
from server.signing.keys import Keystore
from server.signing.repository import TufRepository
from server.staging import Staging
from server.storage import (
    BlobStore,
    MetadataStore,
    ModelRecord,
    ReportRecord,
    VehicleRecord,
    open_storage,
)

log = logging.getLogger(__name__)


class Registry:
    """Publishes model versions as signed TUF targets and serves them."""

    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        tuf: TufRepository,
        rollouts: RolloutPolicy | None = None,
        ca_pem: bytes | None = None,
        staging: Staging | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.tuf = tuf
        # Publishing releases nothing (issue 12): the release log says who gets what.
        self.releases = Releases(store)
        # Each blob is checked before it is first offered or served after a start.
        self.guard = BlobGuard(store, blobs)
        staging = staging or Staging(Path(tempfile.gettempdir()) / "ota-registry-staging")
        # security (issue 4): the director signs, per vehicle, what ``targets_for`` decides
        # (plus explicit assignments); ``ca_pem`` verifies vehicle manifests.
        self.director = Director(
            store, tuf.keystore, tuf, lambda *a: self.delivery.director_default(*a), ca_pem
        )
        self.delivery = Delivery(
            store, blobs, tuf, self.director, self.releases, self.guard, rollouts
        )
        self.publisher = Publisher(
            store, blobs, tuf, self.director, staging, self.releases, self.guard
        )

    @classmethod
    def open(
        cls,
        data_dir: Path | None,
        keys_dir: Path,
        db: str | None = None,
        ca_pem: bytes | None = None,
    ) -> Registry:
        """The embedded default: SQLite + a blob directory under ``data_dir``.

        ``keys_dir`` needs only the online keys (snapshot, timestamp, director);
        ``ca_pem`` is the fleet CA that vehicle manifests are verified against.

        With ``db`` a ``postgresql://`` URL, everything lives in that database
        instead (replicas share it); ``data_dir``, if given, only spools uploads.
        """
        store, blobs = open_storage(data_dir, db)
        # Uploads wait beside the store, never in it (same filesystem: a commit is a rename).
        staging = Staging(Path(data_dir) / "staging") if data_dir else None
        return cls(
            store,
            blobs,
            TufRepository(store, Keystore(keys_dir)),
            CampaignManager(store),
            ca_pem,
            staging,
        )

    @property
    def rollouts(self) -> RolloutPolicy | None:
        """The rollout policy (a ``CampaignManager`` unless a test puts another in)."""
        return self.delivery.rollouts

    @rollouts.setter
    def rollouts(self, policy: RolloutPolicy | None) -> None:
        self.delivery.rollouts = policy

    @property
    def downloads(self) -> deque[DownloadStat]:
        return self.delivery.downloads

    # -- publishing ---------------------------------------------------------------------
    def publish_stream(
        self,
        name: str,
        version: str,
        length: int,
        sha256: str,
        chunks: Iterable[bytes],
        hardware_ids: Iterable[str] = (),
        metadata_json: str = "",
        signed_targets: bytes = b"",
        **kw: Any,
    ) -> ModelRecord:
        """``kw``: allow_downgrade, reason, actor (``Publisher.publish_stream``)."""
        return self.publisher.publish_stream(
            name, version, length, sha256, chunks, hardware_ids, metadata_json, signed_targets, **kw
        )

    def publish_bytes(
        self,
        name: str,
        version: str,
        data: bytes,
        hardware_ids: Iterable[str] = (),
        metadata_json: str = "",
        signed_targets: bytes = b"",
        **kw: Any,
    ) -> ModelRecord:
        return self.publisher.publish_bytes(
            name, version, data, hardware_ids, metadata_json, signed_targets, **kw
        )

    def release(
        self, name: str, version: str, scope: str = FLEET, actor: str = "", reason: str = ""
    ) -> None:
        """Send a published version to the vehicles ``scope`` names (``server/releases.py``)."""
        self.releases.release(name, version, scope, actor, reason)

    def rerelease(self, name: str, version: str) -> int:
        return self.publisher.rerelease(name, version)

    def get_metadata(self, role: str) -> bytes:
        return self.publisher.get_metadata(role)

    def put_metadata(self, role: str, data: bytes) -> int:
        return self.publisher.put_metadata(role, data)

    def list_versions(self, name: str | None = None) -> list[ModelRecord]:
        return self.publisher.list_versions(name)

    def list_page(
        self, name: str | None, page_size: int, page_token: str
    ) -> tuple[list[ModelRecord], str]:
        return self.publisher.list_page(name, page_size, page_token)

    # -- vehicles -----------------------------------------------------------------------
    def offers_for(
        self,
        vehicle_id: str,
        hardware_id: str,
        installed: dict[str, tuple[str, str]],
        wanted: Iterable[str] = (),
        tags: Iterable[str] = (),
        accepted: Iterable[str] = (),
    ) -> list[Offer]:
        return self.delivery.offers_for(vehicle_id, hardware_id, installed, wanted, tags, accepted)

    def targets_for(self, vehicle: VehicleRecord) -> dict[str, ModelRecord]:
        return self.delivery.targets_for(vehicle)

    def open_target(self, path: str) -> tuple[BinaryIO, int]:
        return self.delivery.open_target(path)

    def read_chunks(
        self,
        kind: str,
        path: str,
        offset: int,
        max_bytes: int,
        chunk_size: int,
        vehicle_id: str = "",
    ) -> Iterator[tuple[int, bytes, int]]:
        return self.delivery.read_chunks(kind, path, offset, max_bytes, chunk_size, vehicle_id)

    def record_report(self, rep: ReportRecord) -> None:
        if not rep.vehicle_id:
            raise InvalidArgument("report without a vehicle_id")
        if self.rollouts is not None:
            rep = self.rollouts.on_report(rep)
        self.store.add_report(rep)
        log.info(
            "vehicle %s: %s %s %s %s", rep.vehicle_id, rep.name, rep.version, rep.status, rep.reason
        )
