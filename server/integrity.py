"""The content store's integrity: serve only blobs that match their name, keep only referenced ones.

A blob is named by its sha256, so it can be checked without any other record.
The registry checks each blob the first time it would offer or serve it after a
start (a blob written here in this run was hashed on the way in and is trusted);
``ota registry verify`` re-checks every referenced blob. A bad blob is taken out
of service: moved aside (``BlobStore.quarantine``), logged, counted for metrics,
and neither it nor an offer that needs it is given to a vehicle again. The same
bytes published again restore it (publishing is idempotent per version).

``collect_garbage`` (``ota registry gc``) removes blobs that no version, encoding
or signed target references, older than a grace period so that a blob committed
a moment ago, whose version is being recorded, is never taken.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from tuf.api.metadata import Metadata, Targets

from server.storage import BlobNotFound, BlobStore, MetadataStore

log = logging.getLogger(__name__)

_READ = 1 << 20


IntegrityStore = MetadataStore  # what names blobs: versions, their encodings, the signed targets


@dataclass(frozen=True)
class BadBlob:
    sha256: str
    what: str  # "squeezenet1.0 1.0.0 (full file)", "squeezenet1.0 1.0.1 (tensordelta from 3f2a…)"
    problem: str  # "sha256 is 9c1d…", "missing"


def hash_blob(blobs: BlobStore, sha256: str) -> str:
    h = hashlib.sha256()
    with blobs.open(sha256) as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def referenced(store: IntegrityStore) -> dict[str, str]:
    """Every blob something names, with what names it."""
    out: dict[str, str] = {}
    for rec in store.list_models():
        out.setdefault(rec.sha256, f"{rec.name} {rec.version} (full file)")
        for e in store.list_encodings(rec.name, rec.version):
            base = f" from {e.base_sha256[:12]}" if e.base_sha256 else ""
            out.setdefault(e.blob_sha256, f"{rec.name} {rec.version} ({e.codec}{base})")
    data = store.get_tuf_metadata("targets")
    if data is not None:
        for path, tf in Metadata[Targets].from_bytes(data).signed.targets.items():
            sha = tf.hashes.get("sha256", "")
            if sha:
                out.setdefault(sha, f"signed target {path}")
    return out


class BlobGuard:
    """Checks each blob once per process before it is offered or served."""

    def __init__(self, store: IntegrityStore, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs
        self._lock = threading.Lock()
        self._verified: set[str] = set()
        self._bad: dict[str, str] = {}
        self._busy: dict[
            str, threading.Lock
        ] = {}  # one hash per digest, however many check-ins ask
        self.failures = 0  # bad blobs found by this process (a counter for metrics)

    def trust(self, sha256: str) -> None:
        """``sha256`` was just hashed while it was written here."""
        with self._lock:
            self._verified.add(sha256)
            self._bad.pop(sha256, None)

    @property
    def out_of_service(self) -> dict[str, str]:
        with self._lock:
            return dict(self._bad)

    def usable(self, sha256: str) -> bool:
        """Is the blob present and does it hash to its name? Checked on first use; bad ones go aside."""
        with self._lock:
            if sha256 in self._bad:
                return False
            known_good = sha256 in self._verified
            busy = self._busy.setdefault(sha256, threading.Lock())
        if known_good:
            return self.blobs.exists(sha256)  # `ota registry verify` may have moved it aside since
        with busy:
            with self._lock:
                if sha256 in self._verified or sha256 in self._bad:
                    return sha256 in self._verified
            try:
                actual = hash_blob(self.blobs, sha256)
            except BlobNotFound:
                return False  # gone (quarantined by `ota registry verify`): not offered, not counted twice
            if actual == sha256:
                with self._lock:
                    self._verified.add(sha256)
                return True
            self._take_out(sha256, f"sha256 is {actual[:12]}…")
            return False

    def _take_out(self, sha256: str, problem: str) -> None:
        what = referenced(self.store).get(sha256, "unreferenced blob")
        with self._lock:
            self._bad[sha256] = problem
            self.failures += 1
        try:
            self.blobs.quarantine(sha256)
        except BlobNotFound:
            pass
        log.error(
            "blob %s of %s fails its sha256 check (%s): taken out of service and moved aside; "
            "publish the same file again to restore it",
            sha256[:12],
            what,
            problem,
        )


def verify_all(store: IntegrityStore, blobs: BlobStore) -> tuple[int, list[BadBlob]]:
    """Hash every referenced blob; move bad ones aside. Returns (blobs checked, bad ones)."""
    bad = []
    refs = referenced(store)
    for sha, what in sorted(refs.items(), key=lambda kv: kv[1]):
        try:
            actual = hash_blob(blobs, sha)
        except BlobNotFound:
            bad.append(BadBlob(sha, what, "missing"))
            continue
        if actual != sha:
            bad.append(BadBlob(sha, what, f"sha256 is {actual[:12]}…"))
            blobs.quarantine(sha)
            log.error("blob %s of %s fails its sha256 check: moved aside", sha[:12], what)
    return len(refs), bad


@dataclass(frozen=True)
class Garbage:
    sha256: str
    size: int


def collect_garbage(
    store: IntegrityStore,
    blobs: BlobStore,
    min_age_s: float = 3600.0,
    dry_run: bool = False,
    now: float | None = None,
) -> list[Garbage]:
    """Remove blobs nothing references and older than ``min_age_s``; return them."""
    now = time.time() if now is None else now
    keep = set(referenced(store))
    out = []
    for sha, size, mtime in _listing(blobs):
        if sha in keep or now - mtime < min_age_s:
            continue
        out.append(Garbage(sha, size))
        if not dry_run:
            blobs.delete(sha)
    if out and not dry_run:
        log.info("gc: removed %d unreferenced blobs (%d B)", len(out), sum(g.size for g in out))
    return out


def _listing(blobs: BlobStore) -> Iterable[tuple[str, int, float]]:
    return list(blobs.list_blobs())
