"""Signed TUF repositories kept in the metadata store: the image repository and
the director's per-vehicle repositories.

Built on python-tuf's Metadata API; nothing here invents crypto. Each change
produces new versions, all kept so that any version a client asks for
(consistent snapshots: ``N.role.json``) can be served.

The registry holds only the **online** keys (snapshot, timestamp, director).
Targets metadata of the image repository is signed offline by the publisher
(:func:`sign_targets`) and handed in with :meth:`SignedRepository.put_targets`,
which checks it the way a vehicle will (threshold of the current root's
targets keys, a strictly higher version, not expired) before serving it. New
root versions (rotations, revocations) arrive the same way through
:meth:`SignedRepository.put_root`. A registry that does hold the targets key
(development keystores) signs locally with the same function.

Long file: reading (with the per-version cache), signing, hand-ins and freshness
of one chain share its locks and state; split, each part would reach into the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from securesystemslib.signer import Signer
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from server.signing.cache import parsed
from server.signing.errors import KeystoreError, TufError
from server.signing.expiry import Expiries, utcnow
from server.signing.keys import Keystore
from server.storage.ports import TufMetadataStore

log = logging.getLogger(__name__)

_SERIALIZER = JSONSerializer(compact=True)
TOP_ROLES = ("root", "targets", "snapshot", "timestamp")


class MetadataAccess(Protocol):
    """Where one repository's metadata versions live (a slice of the MetadataStore).

    An access may also offer ``versions() -> {role: latest version}`` (one cheap
    query): the repository then holds the bytes of each latest version in
    memory, and a check-in costs that one query instead of a fetch and a parse
    per role. Versions are immutable, so every replica that reads the same
    numbers from the shared database serves the same bytes.
    """

    def get(self, role: str, version: int | None = None) -> bytes | None: ...
    def put(self, role: str, version: int, data: bytes) -> None: ...
    def signing_lock(self) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class ImageAccess:
    """The image repository: the store's ``tuf_metadata`` history."""

    store: TufMetadataStore

    def get(self, role: str, version: int | None = None) -> bytes | None:
        return self.store.get_tuf_metadata(role, version)

    def put(self, role: str, version: int, data: bytes) -> None:
        self.store.put_tuf_metadata(role, version, data)

    def versions(self) -> dict[str, int]:
        return self.store.tuf_versions()

    def signing_lock(self) -> AbstractContextManager[None]:
        return self.store.signing_lock()


class SignedRepository:
    """Produces and serves one signed metadata chain (root → targets → snapshot → timestamp)."""

    def __init__(
        self,
        access: MetadataAccess,
        keystore: Keystore,
        expiries: Expiries | None = None,
        label: str = "image",
        online_roles: tuple[str, ...] = ("snapshot", "timestamp"),
    ) -> None:
        self.online_roles = online_roles  # the roles this process signs (and so needs keys for)
        self._access = access
        self.keystore = keystore
        self.expiries = expiries or keystore.expiries
        self._lock = threading.RLock()
        self.label = label
        self._held: dict[str, tuple[int, bytes]] = {}  # role -> (version, bytes), see _latest_bytes

    @contextmanager
    def signing(self) -> Iterator[None]:
        """One signer at a time: in this process, and over every replica sharing the store."""
        with self._lock, self._access.signing_lock():
            yield

    # -- reading ------------------------------------------------------------------------
    def _versions(self) -> dict[str, int] | None:
        versions = getattr(self._access, "versions", None)
        return versions() if versions is not None else None

    def _latest_bytes(self, role: str, versions: dict[str, int] | None = None) -> bytes | None:
        """The latest ``role`` bytes; from memory when the access tells versions and it is held."""
        versions = versions if versions is not None else self._versions()
        if versions is None:
            return self._access.get(role)
        version = versions.get(role)
        if version is None:
            return None
        held = self._held.get(role)
        if held is not None and held[0] == version:
            return held[1]
        data = self._access.get(role, version)
        if data is not None:
            self._held[role] = (version, data)
        return data

    def peek(self, role: str, versions: dict[str, int] | None = None) -> Metadata[Any] | None:
        """The latest ``role`` metadata, parsed once per version and shared: read-only."""
        data = self._latest_bytes(role, versions)
        return parsed(data) if data is not None else None

    def root(self) -> Metadata[Root]:
        md = self.peek("root")
        if md is None:
            raise TufError(f"{self.label}: no root metadata yet")
        return md

    def latest(self, role: str) -> Metadata[Any]:
        """A private, freshly parsed copy of the latest ``role`` (callers may change it)."""
        data = self._access.get(role)
        if data is None:
            raise TufError(f"{self.label}: no {role} metadata yet")
        return Metadata.from_bytes(data)

    def has(self, role: str) -> bool:
        return self._latest_bytes(role) is not None

    # -- signing ----------------------------------------------------------------------------
    def signers(self, role: str) -> list[Signer]:
        """The private keys, present here, that the *current* root lists for ``role``."""
        r = self.root().signed.roles[role]
        out: list[Signer] = [
            s for s in (self.keystore.signer_for(k) for k in r.keyids) if s is not None
        ]
        if len(out) < r.threshold:
            raise KeystoreError(
                f"{self.label}: {role} needs {r.threshold} of keys {[k[:12] for k in r.keyids]}; "
                f"{len(out)} are in {self.keystore.path}"
            )
        return out

    def can_sign(self, role: str) -> bool:
        try:
            self.signers(role)
            return True
        except (KeystoreError, TufError):
            return False

    def _sign_and_store(self, md: Metadata[Any]) -> bytes:
        role = md.signed.type
        md.signatures.clear()
        for signer in self.signers(role):
            md.sign(signer, append=True)
        data = md.to_bytes(_SERIALIZER)
        self._access.put(role, md.signed.version, data)
        log.debug("%s: signed %s v%d", self.label, role, md.signed.version)
        return data

    def new_snapshot_and_timestamp(self, now: datetime | None = None) -> None:
        now = now or utcnow()
        targets = self.latest("targets")
        try:
            snap = self.latest("snapshot")
            snap.signed.version += 1
        except TufError:
            snap = Metadata(Snapshot())
        snap.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        snap.signed.expires = now + self.expiries.snapshot
        self._sign_and_store(snap)
        self._new_timestamp(snap.signed.version, now)

    def _new_timestamp(self, snapshot_version: int, now: datetime) -> None:
        try:
            ts = self.latest("timestamp")
            ts.signed.version += 1
        except TufError:
            ts = Metadata(Timestamp())
        ts.signed.snapshot_meta = MetaFile(version=snapshot_version)
        ts.signed.expires = now + self.expiries.timestamp
        self._sign_and_store(ts)

    def sign_new_targets(self, targets: Targets, now: datetime | None = None) -> None:
        """Sign ``targets`` as the next version with keys held here (online targets roles)."""
        with self.signing():
            targets.version = (
                self.latest("targets").signed.version + 1 if self.has("targets") else 1
            )
            targets.expires = (now or utcnow()) + self.expiries.targets
            self._sign_and_store(Metadata(targets))
            self.new_snapshot_and_timestamp(now)

    # -- metadata signed elsewhere -------------------------------------------------------------
    def put_targets(
        self, data: bytes, check: Callable[[Targets], None] | None = None
    ) -> Metadata[Targets]:
        """Accept targets signed offline: verify like a vehicle would, then serve them."""
        with self.signing():
            md = _parse(data, Targets, "targets")
            try:
                self.root().signed.verify_delegate("targets", md.signed_bytes, md.signatures)
            except tuf_exc.UnsignedMetadataError as e:
                raise TufError(
                    f"targets v{md.signed.version} is not signed by the targets threshold: {e}"
                ) from None
            current = self.latest("targets").signed.version if self.has("targets") else 0
            if md.signed.version <= current:
                raise TufError(
                    f"targets v{md.signed.version} is not newer than the served v{current}; "
                    "fetch the latest targets and sign again"
                )
            if md.signed.is_expired(utcnow()):
                raise TufError(f"targets v{md.signed.version} expired at {md.signed.expires}")
            if check is not None:
                check(md.signed)
            self._access.put("targets", md.signed.version, data)
            self.new_snapshot_and_timestamp()
            log.info("%s: accepted offline-signed targets v%d", self.label, md.signed.version)
            return md

    def put_root(self, data: bytes) -> Metadata[Root]:
        """Accept the next root version (rotation/revocation), checked against the current one."""
        with self.signing():
            md = _parse(data, Root, "root")
            trusted = self.root()
            if md.signed.version != trusted.signed.version + 1:
                raise TufError(
                    f"root v{md.signed.version} does not follow the served v{trusted.signed.version}"
                )
            try:
                trusted.signed.verify_delegate("root", md.signed_bytes, md.signatures)
                md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
            except tuf_exc.UnsignedMetadataError as e:
                raise TufError(f"root v{md.signed.version} lacks the root threshold: {e}") from None
            for role in self.online_roles:  # serving on under the new root must stay possible
                r = md.signed.roles[role]
                if sum(self.keystore.signer_for(k) is not None for k in r.keyids) < r.threshold:
                    raise TufError(
                        f"root v{md.signed.version} gives {role} to keys {[k[:12] for k in r.keyids]} "
                        f"that are not in {self.keystore.path}: install the new online keys first "
                        "(ota keys online), then hand in the root"
                    )
            self._access.put("root", md.signed.version, data)
            # Keys may have changed: re-sign what we can so the chain verifies under the new root.
            if self.has("targets") and self.can_sign("snapshot") and self.can_sign("timestamp"):
                self.new_snapshot_and_timestamp()
            log.info("%s: root v%d accepted", self.label, md.signed.version)
            return md

    def install_root_chain(self, roots: list[bytes]) -> None:
        """Store root versions from a keystore's history that are newer than the served one."""
        with self.signing():
            for data in roots:
                version = Metadata[Root].from_bytes(data).signed.version
                if not self.has("root"):
                    if version != 1:
                        raise TufError(
                            f"{self.label}: root history must start at version 1, got {version}"
                        )
                    self._access.put("root", 1, data)
                elif version > self.root().signed.version:
                    self.put_root(data)

    # -- freshness ----------------------------------------------------------------------------
    def refresh_if_needed(
        self, now: datetime | None = None, versions: dict[str, int] | None = None
    ) -> bool:
        """Re-sign what is past half its lifetime and can be signed here."""
        now = now or utcnow()
        if not self._needs_refresh(now, versions):
            return False  # the common case, answered without taking the signing lock
        changed = False
        with self.signing():
            if not self.has("targets"):
                return False
            targets = self.latest("targets")
            if targets.signed.expires - now < self.expiries.targets / 2:
                if self.can_sign("targets"):
                    self.sign_new_targets(targets.signed, now)
                    changed = True
                else:
                    log.warning(
                        "%s: targets v%d expires at %s; sign a fresh version offline "
                        "(ota keys refresh-targets)",
                        self.label,
                        targets.signed.version,
                        targets.signed.expires,
                    )
            snap = self.latest("snapshot")
            if snap.signed.expires - now < self.expiries.snapshot / 2:
                self.new_snapshot_and_timestamp(now)
                changed = True
            ts = self.latest("timestamp")
            if ts.signed.expires - now < self.expiries.timestamp / 2:
                self._new_timestamp(self.latest("snapshot").signed.version, now)
                changed = True
        return changed

    def _needs_refresh(self, now: datetime, versions: dict[str, int] | None = None) -> bool:
        """Anything past half its lifetime? (Read without the signing lock, shared by replicas.)"""
        roles = [("snapshot", self.expiries.snapshot), ("timestamp", self.expiries.timestamp)]
        if self.can_sign("targets"):
            roles.append(("targets", self.expiries.targets))
        for role, life in roles:
            md = self.peek(role, versions)
            if md is not None and md.signed.expires - now < life / 2:
                return True
        return False

    # -- serving ------------------------------------------------------------------------------
    def get_file(self, filename: str, refresh: bool = True) -> bytes:
        """Serve ``timestamp.json``, ``N.role.json`` or ``role.json`` (latest).

        ``timestamp.json`` is re-signed first when due, unless ``refresh`` is off
        (the caller just did it).
        """
        if filename == "timestamp.json":
            versions = self._versions()
            if refresh and self.refresh_if_needed(versions=versions):
                versions = self._versions()
            data = self._latest_bytes("timestamp", versions)
        else:
            stem = filename.removesuffix(".json")
            version_s, _, role = stem.partition(".")
            if not role:  # "root.json" etc.: the latest version
                role, version = stem, None
            else:
                if not version_s.isdigit():
                    raise FileNotFoundError(filename)
                version = int(version_s)
            if role not in TOP_ROLES:
                raise FileNotFoundError(filename)
            data = self._latest_bytes(role) if version is None else self._access.get(role, version)
        if data is None:
            raise FileNotFoundError(filename)
        return data

    def targets(self) -> dict[str, TargetFile]:
        """The latest signed targets (shared objects: read them, do not change them)."""
        md = self.peek("targets")
        if md is None:
            raise TufError(f"{self.label}: no targets metadata yet")
        return dict(md.signed.targets)


class TufRepository(SignedRepository):
    """The image repository: every published model version, as a TUF target."""

    def __init__(
        self, store: TufMetadataStore, keystore: Keystore, expiries: Expiries | None = None
    ) -> None:
        super().__init__(ImageAccess(store), keystore, expiries, label="image")
        self._store = store
        self._init_if_empty()

    def _init_if_empty(self) -> None:
        with self.signing():
            if self.has("root") and self._access.get("root", 1) is None:
                raise TufError("metadata store holds a root chain without version 1")
            self.install_root_chain(self.keystore.root_history("image"))
            if not self.has("targets"):
                initial = self.keystore.initial_targets()
                if initial is not None:
                    self._access.put(
                        "targets", Metadata.from_bytes(initial).signed.version, initial
                    )
                    self.new_snapshot_and_timestamp()
                else:
                    self.sign_new_targets(Targets())

    def add_target(self, path: str, length: int, sha256: str, custom: dict[str, Any]) -> TargetFile:
        """Sign a new target with the targets key held here (development keystores)."""
        with self.signing():
            existing = self.targets().get(path)
            if existing is not None:
                if existing.hashes.get("sha256") == sha256 and existing.length == length:
                    return existing
                raise TufError(f"target {path} is already signed with other bytes")
            tf = TargetFile(
                length=length,
                hashes={"sha256": sha256},
                path=path,
                unrecognized_fields={"custom": custom},
            )
            targets = self.latest("targets").signed
            targets.targets[path] = tf
            self.sign_new_targets(targets)
            return tf


def _parse(data: bytes, kind: type, role: str) -> Metadata[Any]:
    try:
        md = Metadata.from_bytes(data)
    except DeserializationError as e:
        raise TufError(f"not {role} metadata: {e}") from None
    if not isinstance(md.signed, kind):
        raise TufError(f"expected {role} metadata, got {md.signed.type}")
    return md
