"""Transport encodings of published versions: precomputed on publish, offered
at check-in.

On publish, the registry encodes the new version on its own (the smallest of
zstd and the Deep Compression codec) and as a delta from each of the last
``DELTA_DEPTH`` versions of the same model (byte and tensor deltas), keeps
the smallest per base, and stores every encoding that is smaller than the
full file as a content-addressed blob. At check-in, the vehicle's installed
sha256 picks the delta for its base if there is one, else the stand-alone
encoding; the full target stays the fallback. An encoding is never trusted
by the vehicle: it rebuilds the model and checks it against the TUF-signed
hash and length.

The index lives behind the ``EncodingStore`` port, so every registry replica
sharing one database offers the same encodings. Nothing here knows the
registry: it gets the ports it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO, Protocol

from modelpack import codecs
from otawire.paths import ENCODING_PREFIX, encoding_path
from server.errors import NotFound
from server.models import semver_key
from server.storage.ports import BlobNotFound, BlobStore, EncodingStore, ModelStore
from server.storage.records import EncodingRecord, ModelRecord

log = logging.getLogger(__name__)

DELTA_DEPTH = 3  # deltas from this many earlier versions of the same model
# The model-aware codecs: on every model measured they beat zstd and the byte
# delta, and they encode in a fraction of a second, which keeps publish fast.
CODECS = ("deepcompression", "tensordelta")
PATH_PREFIX = ENCODING_PREFIX

StoredEncoding = EncodingRecord  # codec, base_sha256 ("" for stand-alone), blob_sha256, length


class EncodingIndex(ModelStore, EncodingStore, Protocol):
    """What precomputing needs: the earlier versions of a model, and the encodings index."""


def precompute(store: EncodingIndex, blobs: BlobStore, rec: ModelRecord) -> list[StoredEncoding]:
    """Encode ``rec`` stand-alone and from its recent predecessors; store the
    ones smaller than the full file. Never raises: a failure only costs the
    vehicles the saving."""
    try:
        with blobs.open(rec.sha256) as f:
            new = f.read()
        earlier = sorted(
            (
                r
                for r in store.list_models(rec.name)
                if semver_key(r.version) < semver_key(rec.version)
            ),
            key=lambda r: semver_key(r.version),
        )[-DELTA_DEPTH:]
        bases: dict[str, bytes] = {}
        for r in earlier:
            with blobs.open(r.sha256) as f:
                bases[r.sha256] = f.read()
        best: dict[str, codecs.Encoding] = {}
        for enc in codecs.best_encoding(new, bases, only=CODECS):  # smallest first, each verified
            key = enc.base_id or ""
            best.setdefault(key, enc)
        stored = []
        for key, enc in sorted(best.items()):
            if enc.size >= rec.length:
                continue
            blob_sha = blobs.put_bytes(enc.blob)
            stored.append(StoredEncoding(rec.name, rec.version, enc.codec, key, blob_sha, enc.size))
        store.put_encodings(rec.name, rec.version, stored)
        log.info(
            "%s %s: encodings %s",
            rec.name,
            rec.version,
            ", ".join(
                f"{s.codec}{' from ' + s.base_sha256[:8] if s.base_sha256 else ''} {s.length} B"
                for s in stored
            ),
        )
        return stored
    except Exception:
        log.exception(
            "%s %s: precomputing encodings failed; vehicles get the full file",
            rec.name,
            rec.version,
        )
        return []


def stored_encodings(store: EncodingStore, name: str, version: str) -> list[StoredEncoding]:
    return store.list_encodings(name, version)


def best_for(
    store: EncodingStore,
    name: str,
    version: str,
    installed_sha256: str | None,
    full_length: int,
    accepted: frozenset[str] | None = None,
    usable: Callable[[str], bool] = lambda blob_sha256: True,
) -> StoredEncoding | None:
    """The smallest stored encoding a vehicle with ``installed_sha256`` (or nothing)
    installed can use and decode (``accepted``; None: any), if it is smaller than
    the full file (``full_length``). ``usable(blob_sha256)`` false: that blob is out
    of service (it failed its sha256 check); the next one."""
    fitting = [
        s
        for s in stored_encodings(store, name, version)
        if (s.base_sha256 == "" or s.base_sha256 == installed_sha256)
        and (accepted is None or s.codec in accepted)
    ]
    s = next((e for e in sorted(fitting, key=lambda e: e.length) if usable(e.blob_sha256)), None)
    return s if s is not None and s.length < full_length else None


def download_path(s: StoredEncoding) -> str:
    return encoding_path(s.blob_sha256)


def open_encoding(
    blobs: BlobStore, path: str, usable: Callable[[str], bool] = lambda blob_sha256: True
) -> tuple[BinaryIO, int]:
    """Open ``encodings/<blob sha256>`` for a Download call (unless ``usable`` says it is out of service)."""
    if not path.startswith(ENCODING_PREFIX):
        raise NotFound(f"no encoding {path!r}")
    digest = path[len(ENCODING_PREFIX) :]
    if not usable(digest):
        raise NotFound(f"encoding {path!r} is out of service: its blob failed its sha256 check")
    try:
        return blobs.open(digest), blobs.size(digest)
    except BlobNotFound as e:
        raise NotFound(f"no encoding {path!r}: {e}") from None
