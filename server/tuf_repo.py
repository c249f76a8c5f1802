"""The registry's TUF repository: signs every model version as a target.

Built on python-tuf's Metadata API; nothing here invents crypto. Each change
(new target) produces new targets, snapshot and timestamp versions, all kept
in the metadata store so that any version a client asks for (consistent
snapshots: ``N.role.json``) can be served. Timestamp metadata is re-signed
before it expires so a healthy registry never serves stale freshness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from server.keys import Expiries, Keystore, utcnow
from server.storage import MetadataStore

log = logging.getLogger(__name__)

_SERIALIZER = JSONSerializer(compact=True)


class TufError(Exception):
    pass


class TufRepository:
    """Produces and serves the signed metadata chain for the registry's targets."""

    def __init__(self, store: MetadataStore, keystore: Keystore, expiries: Expiries = Expiries()) -> None:
        self._store = store
        self._keys = keystore
        self._expiries = expiries
        self._lock = threading.RLock()
        self._init_if_empty()

    # -- set-up -------------------------------------------------------------------
    @contextmanager
    def _signing(self) -> Iterator[None]:
        """One signer at a time: in this process, and over every replica sharing the store."""
        with self._lock, self._store.signing_lock():
            yield

    def _init_if_empty(self) -> None:
        with self._signing():
            if self._store.get_tuf_metadata("root") is None:
                root = Metadata[Root].from_bytes(self._keys.root_bytes())
                self._store.put_tuf_metadata("root", root.signed.version, self._keys.root_bytes())
            elif self._store.get_tuf_metadata("root", 1) is None:
                raise TufError("metadata store holds a root chain without version 1")
            if self._store.get_tuf_metadata("targets") is None:
                targets = Metadata(Targets(expires=utcnow() + self._expiries.targets))
                self._sign_and_store(targets)
                self._new_snapshot_and_timestamp()

    def root(self) -> Metadata[Root]:
        data = self._store.get_tuf_metadata("root")
        assert data is not None
        return Metadata[Root].from_bytes(data)

    # -- signing ------------------------------------------------------------------
    def _sign_and_store(self, md: Metadata[Any]) -> bytes:
        role = md.signed.type
        md.signatures.clear()
        for signer in self._keys.signers(role):
            md.sign(signer, append=True)
        data = md.to_bytes(_SERIALIZER)
        self._store.put_tuf_metadata(role, md.signed.version, data)
        log.debug("signed %s v%d", role, md.signed.version)
        return data

    def _latest(self, role: str) -> Metadata[Any]:
        data = self._store.get_tuf_metadata(role)
        if data is None:
            raise TufError(f"no {role} metadata yet")
        return Metadata.from_bytes(data)

    def _new_snapshot_and_timestamp(self) -> None:
        targets = self._latest("targets")
        try:
            snap = self._latest("snapshot")
            snap.signed.version += 1
        except TufError:
            snap = Metadata(Snapshot())
        snap.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        snap.signed.expires = utcnow() + self._expiries.snapshot
        self._sign_and_store(snap)
        self._new_timestamp(snap.signed.version)

    def _new_timestamp(self, snapshot_version: int) -> None:
        try:
            ts = self._latest("timestamp")
            ts.signed.version += 1
        except TufError:
            ts = Metadata(Timestamp())
        ts.signed.snapshot_meta = MetaFile(version=snapshot_version)
        ts.signed.expires = utcnow() + self._expiries.timestamp
        self._sign_and_store(ts)

    def add_target(self, path: str, length: int, sha256: str, custom: dict[str, Any]) -> TargetFile:
        """Sign a new target; raises if the path is already signed with other bytes."""
        with self._signing():
            targets: Metadata[Targets] = self._latest("targets")
            existing = targets.signed.targets.get(path)
            if existing is not None:
                if existing.hashes.get("sha256") == sha256 and existing.length == length:
                    return existing
                raise TufError(f"target {path} is already signed with other bytes")
            tf = TargetFile(length=length, hashes={"sha256": sha256}, path=path, unrecognized_fields={"custom": custom})
            targets.signed.targets[path] = tf
            targets.signed.version += 1
            targets.signed.expires = utcnow() + self._expiries.targets
            self._sign_and_store(targets)
            self._new_snapshot_and_timestamp()
            return tf

    def refresh_if_needed(self, now: datetime | None = None) -> bool:
        """Re-sign timestamp (and snapshot/targets) when past half their lifetime."""
        now = now or utcnow()
        if not self._needs_refresh(now):
            return False  # the common case, answered without taking the signing lock
        changed = False
        with self._signing():
            targets = self._latest("targets")
            if targets.signed.expires - now < self._expiries.targets / 2:
                targets.signed.version += 1
                targets.signed.expires = now + self._expiries.targets
                self._sign_and_store(targets)
                self._new_snapshot_and_timestamp()
                changed = True
            snap = self._latest("snapshot")
            if snap.signed.expires - now < self._expiries.snapshot / 2:
                self._new_snapshot_and_timestamp()
                changed = True
            ts = self._latest("timestamp")
            if ts.signed.expires - now < self._expiries.timestamp / 2:
                self._new_timestamp(self._latest("snapshot").signed.version)
                changed = True
        return changed

    def _needs_refresh(self, now: datetime) -> bool:
        return any(
            self._latest(role).signed.expires - now < lifetime / 2
            for role, lifetime in (
                ("targets", self._expiries.targets),
                ("snapshot", self._expiries.snapshot),
                ("timestamp", self._expiries.timestamp),
            )
        )

    # -- serving --------------------------------------------------------------------
    def get_file(self, filename: str) -> bytes:
        """Serve ``timestamp.json``, ``N.role.json`` or ``root.json`` (latest)."""
        if filename == "timestamp.json":
            self.refresh_if_needed()
            data = self._store.get_tuf_metadata("timestamp")
        else:
            stem = filename.removesuffix(".json")
            version_s, _, role = stem.partition(".")
            if not role:  # "root.json" etc.: the latest version
                role, version = stem, None
            else:
                if not version_s.isdigit():
                    raise FileNotFoundError(filename)
                version = int(version_s)
            if role not in ("root", "snapshot", "targets", "timestamp"):
                raise FileNotFoundError(filename)
            data = self._store.get_tuf_metadata(role, version)
        if data is None:
            raise FileNotFoundError(filename)
        return data

    def targets(self) -> dict[str, TargetFile]:
        return dict(self._latest("targets").signed.targets)
