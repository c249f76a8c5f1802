"""Delivery: what a vehicle is offered at check-in, and the bytes of each Download.

``targets_for`` is the one decision (which version of each model a vehicle runs):
the rollout policy's (campaigns) if there is one, else the newest for its
hardware; the director's explicit assignments win over both. An offer names the
smallest stored encoding the vehicle can apply, the full target the fallback.
Free of gRPC: ``server/service.py`` adapts it.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, Protocol

from otawire.paths import DIRECTOR_PREFIX, consistent_target_path, split_consistent_path
from server import encodings
from server.director import Director
from server.errors import InvalidArgument, NotFound, RegistryError
from server.integrity import BlobGuard
from server.models import semver_key
from server.releases import Releases
from server.signing.repository import TufRepository
from server.storage.ports import BlobNotFound, BlobStore, EncodingStore, FleetStore, ModelStore
from server.storage.records import ModelRecord, ReportRecord, VehicleRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """One update offer; its fields are ``UpdateOffer``'s, one for one."""

    name: str
    version: str
    target_path: str
    length: int
    sha256: str
    encoding: str = "full"
    download_path: str = ""
    download_length: int = 0
    base_sha256: str = ""
    fallback_encoding: str = ""
    fallback_download_path: str = ""
    fallback_download_length: int = 0


@dataclass(frozen=True)
class DownloadStat:
    """One served Download call, kept in memory for tests and metrics."""

    kind: str
    path: str
    offset: int
    bytes_sent: int


class RolloutPolicy(Protocol):
    """Decides which version of each model a vehicle runs (``server/campaigns/``)."""

    def choose(
        self,
        vehicle: VehicleRecord,
        compatible: dict[str, list[ModelRecord]],
        released_to: dict[tuple[str, str], float],
    ) -> dict[str, ModelRecord]:
        """``released_to``: (name, version) explicitly released to this vehicle, with when."""
        ...

    def on_report(self, rep: ReportRecord) -> ReportRecord: ...


class DeliveryStore(ModelStore, EncodingStore, FleetStore, Protocol):
    """The ports delivery reads: versions, encodings, what the inventory knows of a vehicle."""


class Delivery:
    """Offers at check-in and the bytes of Download calls."""

    def __init__(
        self,
        store: DeliveryStore,
        blobs: BlobStore,
        tuf: TufRepository,
        director: Director,
        releases: Releases,
        guard: BlobGuard,
        rollouts: RolloutPolicy | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.tuf = tuf
        self.director = director
        self.releases = releases
        self.guard = guard
        self.rollouts = rollouts  # None: every vehicle gets the newest version released to it
        # Recent Download calls (bounded: a long-running registry must not grow).
        self.downloads: deque[DownloadStat] = deque(maxlen=4096)

    def director_default(
        self, vehicle_id: str, hardware_id: str, installed: dict[str, tuple[str, str]]
    ) -> dict[str, ModelRecord]:
        """What the director instructs by default: ``targets_for`` with the verified manifest's facts."""
        known = self.store.get_vehicle(vehicle_id)
        return self.targets_for(
            VehicleRecord(
                vehicle_id,
                hardware_id,
                known.tags if known else (),
                installed,
                known.wanted if known else (),
            )
        )

    def offers_for(
        self,
        vehicle_id: str,
        hardware_id: str,
        installed: dict[str, tuple[str, str]],
        wanted: Iterable[str] = (),
        tags: Iterable[str] = (),
        accepted: Iterable[str] = (),
    ) -> list[Offer]:
        """An offer for each model where the chosen version differs from the installed one,
        in an encoding the vehicle can decode (``accepted``; empty: any)."""
        can = frozenset(accepted) or None
        chosen = self.targets_for(
            VehicleRecord(
                vehicle_id,
                hardware_id,
                tuple(sorted(set(tags))),
                dict(installed),
                tuple(sorted(set(wanted))),
            )
        )
        # security (issue 4): explicit pins win (when their bytes are good)
        pins = self.director.assigned(vehicle_id, wanted)
        chosen.update({n: r for n, r in pins.items() if self.guard.usable(r.sha256)})
        offers = []
        for name, rec in sorted(chosen.items()):
            have = installed.get(name)
            if have is not None and have[1] == rec.sha256:
                continue
            full = Offer(
                name=rec.name,
                version=rec.version,
                target_path=rec.target_path,
                length=rec.length,
                sha256=rec.sha256,
                encoding="full",
                download_path=consistent_target_path(rec.target_path, rec.sha256),
                download_length=rec.length,
            )
            enc = encodings.best_for(
                self.store,
                rec.name,
                rec.version,
                have[1] if have else None,
                rec.length,
                can,
                usable=self.guard.usable,
            )
            if enc is not None:
                full = replace(
                    full,
                    encoding=enc.codec,
                    download_path=encodings.download_path(enc),
                    download_length=enc.length,
                    base_sha256=enc.base_sha256,
                )
            alone = encodings.best_for(
                self.store, rec.name, rec.version, None, rec.length, can, usable=self.guard.usable
            )
            if enc is not None and enc.base_sha256 and alone is not None:
                # issue 12: a refused delta falls back to this, not to the full file.
                full = replace(
                    full,
                    fallback_encoding=alone.codec,
                    fallback_download_path=encodings.download_path(alone),
                    fallback_download_length=alone.length,
                )
            offers.append(full)
        return offers

    def targets_for(self, vehicle: VehicleRecord) -> dict[str, ModelRecord]:
        """The one decision: which version of each wanted model this vehicle should run.

        Without a rollout policy, the newest version its hardware may run; with one
        (campaigns), whatever the policy chooses among those versions.
        """
        compatible: dict[str, list[ModelRecord]] = {}
        for rec in self.store.list_models():
            if vehicle.wanted and rec.name not in vehicle.wanted:
                continue
            if rec.hardware_ids and vehicle.hardware_id not in rec.hardware_ids:
                continue
            compatible.setdefault(rec.name, []).append(rec)
        released = self.releases.released_for(vehicle)
        while True:
            if self.rollouts is not None:
                chosen = self.rollouts.choose(vehicle, compatible, released)
            else:
                chosen = _newest_released(vehicle, compatible, released)
            # A version whose blob fails its check is out of service: choose again without it.
            bad = {n: r for n, r in chosen.items() if not self.guard.usable(r.sha256)}
            if not bad:
                return chosen
            for n, r in bad.items():
                compatible[n] = [c for c in compatible[n] if c.sha256 != r.sha256]

    def open_target(self, path: str) -> tuple[BinaryIO, int]:
        """Open ``dir/<sha256>.<file>`` (TUF consistent-snapshot target path)."""
        split = split_consistent_path(path)
        if split is None:
            raise NotFound(f"no target {path!r}")
        target_path, digest = split
        if not any(r.target_path == target_path for r in self.store.models_by_sha256(digest)):
            raise NotFound(f"no target {path!r}")
        if not self.guard.usable(digest):
            raise NotFound(f"target {path!r} is out of service: its blob failed its sha256 check")
        try:
            return self.blobs.open(digest), self.blobs.size(digest)
        except BlobNotFound as e:
            raise NotFound(str(e)) from None

    def read_chunks(
        self,
        kind: str,
        path: str,
        offset: int,
        max_bytes: int,
        chunk_size: int,
        vehicle_id: str = "",
    ) -> Iterator[tuple[int, bytes, int]]:
        """Yield ``(offset, data, total_length)`` for a Download call.

        ``director/…`` metadata is the chain of ``vehicle_id``, which the
        servicer takes from the caller's certificate.
        """
        f: BinaryIO
        if kind == "metadata":
            try:
                if path.startswith(DIRECTOR_PREFIX):
                    data = self.director.get_file(vehicle_id, path[len(DIRECTOR_PREFIX) :])
                else:
                    data = self.tuf.get_file(path)
            except FileNotFoundError:
                raise NotFound(f"no metadata file {path!r}") from None
            f = io.BytesIO(data)
            total = len(data)
        elif kind == "target":
            f, total = self.open_target(path)
        elif kind == "encoding":
            f, total = encodings.open_encoding(self.blobs, path, self.guard.usable)
        else:
            raise InvalidArgument(f"unknown file kind {kind!r}")
        if offset > total:
            f.close()
            raise InvalidArgument(f"offset {offset} is past the end of {path!r} ({total} B)")
        end = total if not max_bytes else min(total, offset + max_bytes)
        stat_sent = 0
        try:
            f.seek(offset)
            pos = offset
            while pos < end:
                data = f.read(min(chunk_size, end - pos))
                if not data:
                    break
                yield pos, data, total
                pos += len(data)
                stat_sent += len(data)
        finally:
            f.close()
            self.downloads.append(DownloadStat(kind, path, offset, stat_sent))


def _newest_released(
    vehicle: VehicleRecord,
    compatible: dict[str, list[ModelRecord]],
    released: dict[tuple[str, str], float],
) -> dict[str, ModelRecord]:
    """Without a rollout policy: the newest version released to the vehicle, never below what it runs."""
    out = {}
    for name, recs in compatible.items():
        mine = [r for r in recs if (name, r.version) in released]
        best = max(mine, key=lambda r: semver_key(r.version), default=None)
        have = vehicle.installed.get(name)
        if best is not None and not (have and _below(best.version, have[0])):
            out[name] = best
    return out


def _below(candidate: str, installed: str) -> bool:
    try:
        return semver_key(candidate) < semver_key(installed)
    except RegistryError:
        return False  # an installed version we cannot order: let the registry's choice stand
