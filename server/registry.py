"""The registry's domain logic, free of gRPC: publish, list, release, offer, serve, record.

Servicers in ``server/service.py`` are thin adapters over this class. Publishing
stores and signs; only a release or a campaign sends a version to vehicles
(``server/releases.py``). Uploads are staged apart from the content store
(``server/staging.py``); blobs are checked before they are offered or served
(``server/integrity.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import onnx

from tuf.api.metadata import TargetFile, Targets

from server import encodings
from server.director import Director, DirectorError
from server.integrity import BlobGuard
from server.releases import FLEET, Releases
from server.staging import Staging
from server.keys import KeystoreError, utcnow
from server.storage import (
    BlobNotFound,
    BlobStore,
    FileBlobStore,
    MetadataStore,
    ModelRecord,
    ReportRecord,
    StorageError,
    VehicleRecord,
)
from server.tuf_repo import TufError, TufRepository, next_release_counter, rereleased

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 512 * 1024 * 1024  # an AlexNet-sized model (240 MB) fits twice
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


class RegistryError(Exception):
    """A request the registry refuses. ``kind`` maps to a gRPC status code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "invalid", "exists", "not_found", "too_large", "unsigned", "denied", "replay"


def semver_key(version: str) -> tuple:
    """Sort key for semantic versions; a pre-release sorts before its release."""
    m = _SEMVER_RE.match(version)
    if not m:
        raise RegistryError("invalid", f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    major, minor, patch, pre = m.groups()
    pre_key: tuple = (1,) if pre is None else (0, *((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")))
    return (int(major), int(minor), int(patch), pre_key)


def validate_onnx(data: bytes, where: str = "upload") -> onnx.ModelProto:
    """Refuse anything that is not a well-formed ONNX model, saying why."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise RegistryError("invalid", f"{where} is not an ONNX model (protobuf decode failed: {e})") from None
    if not model.graph.node:
        raise RegistryError("invalid", f"{where} is not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unknown error"
        raise RegistryError("invalid", f"{where} fails onnx.checker: {first}") from None
    return model


@dataclass(frozen=True)
class Offer:
    name: str
    version: str
    target_path: str
    length: int
    sha256: str
    encoding: str = "full"
    download_path: str = ""
    download_length: int = 0
    base_sha256: str = ""


@dataclass(frozen=True)
class DownloadStat:
    """One served Download call, kept in memory for tests and metrics."""

    kind: str
    path: str
    offset: int
    bytes_sent: int


class RolloutPolicy(Protocol):
    """Decides which version of each model a vehicle runs (``server/campaigns.py``)."""

    def choose(self, vehicle: VehicleRecord, compatible: dict[str, list[ModelRecord]],
               released: dict[tuple[str, str], float]) -> dict[str, ModelRecord]:
        """``released``: (name, version) explicitly released to this vehicle, with when."""
        ...

    def on_report(self, rep: ReportRecord) -> ReportRecord: ...


class Registry:
    """Publishes model versions as signed TUF targets and serves them."""

    def __init__(
        self, store: MetadataStore, blobs: BlobStore, tuf: TufRepository, rollouts: RolloutPolicy | None = None,
        ca_pem: bytes | None = None, staging: Staging | None = None,
    ) -> None:
        import tempfile

        self.store = store
        self.blobs = blobs
        self.tuf = tuf
        self.rollouts = rollouts  # None: every vehicle gets the newest version released to it
        self.staging = staging or Staging(Path(tempfile.gettempdir()) / "ota-registry-staging")
        self.releases = Releases(store)
        self.guard = BlobGuard(store, blobs)
        # security (issue 4): the director signs, per vehicle, what ``targets_for`` decides
        # (plus explicit assignments); ``ca_pem`` verifies vehicle manifests.
        self.director = Director(store, tuf.keystore, tuf, self._director_default, ca_pem)
        # Recent Download calls (bounded: a long-running registry must not grow).
        self.downloads: deque[DownloadStat] = deque(maxlen=4096)

    @classmethod
    def open(cls, data_dir: Path | None, keys_dir: Path, db: str | None = None,
             ca_pem: bytes | None = None) -> "Registry":
        """The embedded default: SQLite + a blob directory under ``data_dir``.

        ``keys_dir`` needs only the online keys (snapshot, timestamp, director);
        ``ca_pem`` is the fleet CA that vehicle manifests are verified against.

        With ``db`` a ``postgresql://`` URL, everything lives in that database
        instead (replicas share it); ``data_dir``, if given, only spools uploads.
        """
        from server.keys import Keystore

        store: MetadataStore
        blobs: BlobStore
        if db:
            from server.storage_pg import is_postgres_url, open_postgres

            if not is_postgres_url(db):
                raise StorageError(f"--db {db!r}: only postgresql://… URLs are supported (SQLite is the default)")
            store, blobs = open_postgres(db, spool_dir=Path(data_dir) / "spool" if data_dir else None)
        else:
            from server.storage import SqliteMetadataStore

            if data_dir is None:
                raise StorageError("the embedded SQLite store needs a data directory")
            data_dir = Path(data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
            store = SqliteMetadataStore(data_dir / "registry.sqlite3")
            blobs = FileBlobStore(data_dir / "blobs")
        from server.campaigns import CampaignManager

        rollouts = CampaignManager(store) if CampaignManager.supported_by(store) else None
        staging = Staging(Path(data_dir) / "staging") if data_dir else None
        return cls(store, blobs, TufRepository(store, Keystore(keys_dir)), rollouts, ca_pem, staging)

    # -- publishing -----------------------------------------------------------------
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
        allow_downgrade: bool = False,
        reason: str = "",
        actor: str = "",
    ) -> ModelRecord:
        """Stage an upload, check it, then publish it; the staged file never outlives the call.

        ``signed_targets`` is the next image targets metadata listing this
        model, signed offline by the publisher; without it the registry signs
        only if it holds the targets key (development keystores). A version
        below the highest published needs ``allow_downgrade`` and a ``reason``,
        recorded with ``actor`` (who asked) in the release log.
        """
        if length > MAX_MODEL_BYTES:
            raise RegistryError("too_large", f"model is {length} B; the limit is {MAX_MODEL_BYTES} B")
        h = hashlib.sha256()
        received = 0
        # Removed on every way out: accepted (then already moved into the store), refused,
        # or the stream cancelled (the request iterator raises here).
        with self.staging.file() as (fd, tmp):
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    received += len(chunk)
                    if received > length:
                        raise RegistryError("invalid", f"upload sent more than the announced {length} B")
                    h.update(chunk)
                    f.write(chunk)
            if received != length:
                raise RegistryError("invalid", f"upload truncated: received {received} of {length} B")
            if sha256 and h.hexdigest() != sha256:
                raise RegistryError("invalid", f"upload corrupted: sha256 {h.hexdigest()} != announced {sha256}")
            return self._publish_file(name, version, tmp, h.hexdigest(), length, hardware_ids, metadata_json,
                                      signed_targets, allow_downgrade, reason, actor)

    def publish_bytes(
        self, name: str, version: str, data: bytes, hardware_ids: Iterable[str] = (), metadata_json: str = "",
        signed_targets: bytes = b"", **kw: object,
    ) -> ModelRecord:
        """``kw``: allow_downgrade, reason, actor (see ``publish_stream``)."""
        sha = hashlib.sha256(data).hexdigest()
        return self.publish_stream(name, version, len(data), sha, [data], hardware_ids, metadata_json, signed_targets,
                                   **kw)  # type: ignore[arg-type]

    def _commit(self, staged: Path, sha256: str) -> None:
        """Move an accepted upload into the content store; it was hashed on the way in."""
        self.blobs.put_file(staged, sha256)
        self.guard.trust(sha256)

    def _publish_file(
        self,
        name: str,
        version: str,
        path: Path,
        sha256: str,
        length: int,
        hardware_ids: Iterable[str],
        metadata_json: str,
        signed_targets: bytes = b"",
        allow_downgrade: bool = False,
        reason: str = "",
        actor: str = "",
    ) -> ModelRecord:
        if not _NAME_RE.match(name):
            raise RegistryError("invalid", f"model name {name!r} must be lowercase letters, digits, '.', '_' or '-'")
        semver_key(version)
        existing = self.store.get_model(name, version)
        if existing is not None:
            if existing.sha256 == sha256:
                if not self.blobs.exists(sha256):  # moved aside as bad (or lost): the same bytes restore it
                    self._commit(path, sha256)
                    log.warning("%s %s: blob %s restored from a re-upload", name, version, sha256[:12])
                return existing  # idempotent re-publish of the same bytes
            raise RegistryError(
                "exists",
                f"{name} {version} is already published with sha256 {existing.sha256[:16]}…; "
                "versions are immutable: publish a new version",
            )
        self.releases.check_order(name, version, allow_downgrade, reason)
        model = validate_onnx(path.read_bytes(), where=f"{name} {version}")
        info = _model_info_json(model, metadata_json)
        hw = tuple(sorted(set(hardware_ids)))
        target_path = model_target_path(name, version)
        # Nothing enters the content store before it is accepted (signed); see _commit.
        if signed_targets:
            custom = self._accept_signed_target(signed_targets, target_path, name, version, sha256, length, path)
            hw = tuple(custom.get("hardware_ids") or ())
            info = _signed_json(custom.get("model_info_json"))
        elif self.tuf.can_sign("targets"):
            counter = next_release_counter(self.tuf.latest("targets").signed, name)
            self._commit(path, sha256)  # before the signature that names it, so it is never served missing
            self.tuf.add_target(target_path, length, sha256, target_custom(name, version, hw, info, counter))
        else:
            raise RegistryError(
                "unsigned",
                f"{name} {version}: the targets key is offline and no signed targets came with the upload; "
                "publish with `ota publish --keys KEYS` to sign on the publisher's side",
            )
        rec = ModelRecord(
            name=name,
            version=version,
            sha256=sha256,
            length=length,
            target_path=target_path,
            hardware_ids=hw,
            metadata_json=json.dumps(info, sort_keys=True),
            published_at=utcnow().isoformat().replace("+00:00", "Z"),
        )
        try:
            self.store.add_model(rec)
        except StorageError as e:
            raise RegistryError("exists", str(e)) from None
        if allow_downgrade:
            self.releases.record("downgrade", name, version, actor=actor, reason=reason)
        log.info("published %s %s (%d B, sha256 %s); offered to no vehicle until released",
                 name, version, length, sha256[:12])
        for enc in encodings.precompute(self, rec):
            self.guard.trust(enc.blob_sha256)
        return rec

    def _accept_signed_target(self, signed: bytes, target_path: str, name: str, version: str, sha256: str,
                              length: int, staged: Path) -> dict:
        def check(targets: Targets) -> None:
            tf = targets.targets.get(target_path)
            if tf is None:
                raise TufError(f"the signed targets do not list {target_path}")
            custom = tf.custom or {}
            if tf.hashes.get("sha256") != sha256 or tf.length != length:
                raise TufError(f"the signed {target_path} is not the uploaded bytes (sha256/length differ)")
            if (custom.get("name"), custom.get("version")) != (name, version):
                raise TufError(f"the signed {target_path} names {custom.get('name')} {custom.get('version')}")
            for path, other in targets.targets.items():
                if path != target_path and not self.blobs.exists(other.hashes.get("sha256", "")):
                    raise TufError(f"the signed targets list {path}, which this registry does not hold")
            # Every check passed: commit the blob last, just before the metadata naming it is stored.
            self._commit(staged, sha256)

        try:
            md = self.tuf.put_targets(signed, check)
        except (TufError, KeystoreError) as e:
            raise RegistryError("unsigned", f"signed targets refused: {e}") from None
        return dict(md.signed.targets[target_path].custom or {})

    # -- releases -------------------------------------------------------------------
    def release(self, name: str, version: str, scope: str = FLEET, actor: str = "", reason: str = "") -> None:
        """Send a published version to the vehicles ``scope`` names (``server/releases.py``)."""
        self.releases.release(name, version, scope, actor, reason)

    def rerelease(self, name: str, version: str, actor: str = "") -> int:
        """Sign ``name`` ``version`` again with the highest release counter (here: targets key held
        locally; offline: ``ota rerelease --keys``), so that vehicles may go back to it."""
        rec = self.store.get_model(name, version)
        if rec is None:
            raise RegistryError("not_found", f"{name} {version} is not published")
        if not self.tuf.can_sign("targets"):
            raise RegistryError("unsigned", "the targets key is offline: re-release with `ota rerelease --keys KEYS`")
        targets = self.tuf.latest("targets").signed
        tf = rereleased(targets, rec.target_path)
        targets.targets[tf.path] = tf
        self.tuf.sign_new_targets(targets)
        counter = int(tf.custom["release_counter"])
        self.releases.record("rerelease", name, version, actor=actor, reason=f"release counter {counter}")
        return counter

    # -- metadata signed offline ---------------------------------------------------------------
    def get_metadata(self, role: str) -> bytes:
        try:
            if role == "director-root":
                return self.director.repo("-").get_file("root.json")
            if role in ("root", "targets"):
                return self.tuf.get_file(f"{role}.json")
        except (FileNotFoundError, TufError):
            pass
        raise RegistryError("not_found", f"no metadata for role {role!r} (use root, targets or director-root)")

    def put_metadata(self, role: str, data: bytes) -> int:
        """Accept the next root/director-root/targets version signed offline; return its version."""
        try:
            if role == "root":
                return self.tuf.put_root(data).signed.version
            if role == "director-root":
                return self.director.put_root(data)
            if role == "targets":
                def check(targets: Targets) -> None:
                    missing = [p for p, t in targets.targets.items() if not self.blobs.exists(t.hashes.get("sha256", ""))]
                    if missing:
                        raise TufError(f"the signed targets list {missing}, which this registry does not hold")

                return self.tuf.put_targets(data, check).signed.version
        except (TufError, KeystoreError) as e:
            raise RegistryError("unsigned", f"{role} metadata refused: {e}") from None
        raise RegistryError("invalid", f"cannot hand in metadata for role {role!r}")

    def list_versions(self, name: str | None = None) -> list[ModelRecord]:
        recs = self.store.list_models(name or None)
        return sorted(recs, key=lambda r: (r.name, semver_key(r.version)))

    # -- vehicles ---------------------------------------------------------------------
    def _director_default(self, vehicle_id: str, hardware_id: str,
                          installed: dict[str, tuple[str, str]]) -> dict[str, ModelRecord]:
        """What the director instructs by default: ``targets_for`` with the verified manifest's facts."""
        known = self.store.get_vehicle(vehicle_id)
        return self.targets_for(VehicleRecord(
            vehicle_id, hardware_id, known.tags if known else (), installed, known.wanted if known else ()))

    def offers_for(
        self,
        vehicle_id: str,
        hardware_id: str,
        installed: dict[str, tuple[str, str]],
        wanted: Iterable[str] = (),
        tags: Iterable[str] = (),
    ) -> list[Offer]:
        """An offer for each model where the chosen version differs from the installed one."""
        chosen = self.targets_for(
            VehicleRecord(vehicle_id, hardware_id, tuple(sorted(set(tags))), dict(installed), tuple(sorted(set(wanted))))
        )
        # security (issue 4): explicit pins win (if their bytes are good)
        chosen.update({n: r for n, r in self.director.assigned(vehicle_id, wanted).items()
                       if self.guard.usable(r.sha256)})
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
            offers.append(encodings.best_offer(self, full, have[1] if have else None))
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
        directory, _, base = path.rpartition("/")
        digest, dot, rest = base.partition(".")
        if not dot or not self.store.models_by_sha256(digest):
            raise RegistryError("not_found", f"no target {path!r}")
        if not any(r.target_path == (f"{directory}/{rest}" if directory else rest) for r in self.store.models_by_sha256(digest)):
            raise RegistryError("not_found", f"no target {path!r}")
        if not self.guard.usable(digest):
            raise RegistryError("not_found", f"target {path!r} is out of service: its blob failed its sha256 check")
        try:
            return self.blobs.open(digest), self.blobs.size(digest)
        except BlobNotFound as e:
            raise RegistryError("not_found", str(e)) from None

    def read_chunks(self, kind: str, path: str, offset: int, max_bytes: int, chunk_size: int,
                    vehicle_id: str = "") -> Iterator[tuple[int, bytes, int]]:
        """Yield ``(offset, data, total_length)`` for a Download call.

        ``director/…`` metadata is the chain of ``vehicle_id``, which the
        servicer takes from the caller's certificate.
        """
        if kind == "metadata":
            try:
                if path.startswith(DIRECTOR_PREFIX):
                    data = self.director.get_file(vehicle_id, path[len(DIRECTOR_PREFIX):])
                else:
                    data = self.tuf.get_file(path)
            except DirectorError as e:
                raise RegistryError(e.kind, str(e)) from None
            except FileNotFoundError:
                raise RegistryError("not_found", f"no metadata file {path!r}") from None
            f: BinaryIO = io.BytesIO(data)
            total = len(data)
        elif kind == "target":
            f, total = self.open_target(path)
        elif kind == "encoding":
            f, total = encodings.open_encoding(self, path)
        else:
            raise RegistryError("invalid", f"unknown file kind {kind!r}")
        if offset > total:
            f.close()
            raise RegistryError("invalid", f"offset {offset} is past the end of {path!r} ({total} B)")
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

    def record_report(self, rep: ReportRecord) -> None:
        if not rep.vehicle_id:
            raise RegistryError("invalid", "report without a vehicle_id")
        if self.rollouts is not None:
            rep = self.rollouts.on_report(rep)
        self.store.add_report(rep)
        log.info("vehicle %s: %s %s %s %s", rep.vehicle_id, rep.name, rep.version, rep.status, rep.reason)


DIRECTOR_PREFIX = "director/"


def _newest_released(vehicle: VehicleRecord, compatible: dict[str, list[ModelRecord]],
                     released: dict[tuple[str, str], float]) -> dict[str, ModelRecord]:
    """Without a rollout policy: the newest version released to the vehicle, never below what it runs."""
    out = {}
    for name, recs in compatible.items():
        best = max((r for r in recs if (name, r.version) in released), key=lambda r: semver_key(r.version),
                   default=None)
        have = vehicle.installed.get(name)
        if best is not None and not (have and _below(best.version, have[0])):
            out[name] = best
    return out


def _below(candidate: str, installed: str) -> bool:
    try:
        return semver_key(candidate) < semver_key(installed)
    except RegistryError:
        return False  # an installed version we cannot order: let the registry's choice stand


def model_target_path(name: str, version: str) -> str:
    return f"{name}/{version}.onnx"


def target_custom(name: str, version: str, hardware_ids: Iterable[str], info: dict, release_counter: int) -> dict:
    """The custom fields of a model target, as the image repository signs them."""
    # TUF's canonical JSON has no floats, so ModelInfo travels as a signed JSON string.
    return {
        "name": name,
        "version": version,
        "hardware_ids": sorted(set(hardware_ids)),
        "release_counter": int(release_counter),
        "model_info_json": json.dumps(info, sort_keys=True),
    }


def model_target(name: str, version: str, data: bytes, hardware_ids: Iterable[str], metadata_json: str,
                 release_counter: int) -> TargetFile:
    """The TargetFile the publisher signs for ``data`` (validated as ONNX first)."""
    model = validate_onnx(data, where=f"{name} {version}")
    info = _model_info_json(model, metadata_json)
    return TargetFile(
        length=len(data),
        hashes={"sha256": hashlib.sha256(data).hexdigest()},
        path=model_target_path(name, version),
        unrecognized_fields={"custom": target_custom(name, version, hardware_ids, info, release_counter)},
    )


def _signed_json(text: object) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def consistent_target_path(target_path: str, sha256: str) -> str:
    directory, sep, base = target_path.rpartition("/")
    return f"{directory}{sep}{sha256}.{base}"


def _model_info_json(model: onnx.ModelProto, metadata_json: str) -> dict:
    """The publisher's ModelInfo if given, else the one embedded in the ONNX file."""
    from modelpack.metadata import ONNX_METADATA_KEY, ModelInfo

    text = metadata_json.strip()
    if not text:
        text = next((p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY), "")
    if not text:
        return {}
    try:
        return ModelInfo.from_json(text).to_dict()
    except (ValueError, TypeError) as e:
        raise RegistryError("invalid", f"model metadata is not a valid ModelInfo: {e}") from None
