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

The index lives in the metadata store (``put_encodings``/``list_encodings``),
so every registry replica sharing one database offers the same encodings.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO

from modelpack import codecs
from server.storage import EncodingRecord

if TYPE_CHECKING:  # the registry imports this module, not the other way round at run time
    from server.registry import Offer, Registry
    from server.storage import ModelRecord

log = logging.getLogger(__name__)

DELTA_DEPTH = 3  # deltas from this many earlier versions of the same model
# The model-aware codecs: on every model measured they beat zstd and the byte
# delta, and they encode in a fraction of a second, which keeps publish fast.
CODECS = ("deepcompression", "tensordelta")
PATH_PREFIX = "encodings/"


StoredEncoding = EncodingRecord  # codec, base_sha256 ("" for stand-alone), blob_sha256, length


def precompute(registry: Registry, rec: ModelRecord) -> list[StoredEncoding]:
    """Encode ``rec`` stand-alone and from its recent predecessors; store the
    ones smaller than the full file. Never raises: a failure only costs the
    vehicles the saving."""
    from server.registry import semver_key

    try:
        with registry.blobs.open(rec.sha256) as f:
            new = f.read()
        earlier = sorted(
            (r for r in registry.store.list_models(rec.name) if semver_key(r.version) < semver_key(rec.version)),
            key=lambda r: semver_key(r.version),
        )[-DELTA_DEPTH:]
        bases: dict[str, bytes] = {}
        for r in earlier:
            with registry.blobs.open(r.sha256) as f:
                bases[r.sha256] = f.read()
        best: dict[str, codecs.Encoding] = {}
        for enc in codecs.best_encoding(new, bases, only=CODECS):  # smallest first, each verified
            key = enc.base_id or ""
            best.setdefault(key, enc)
        stored = []
        for key, enc in sorted(best.items()):
            if enc.size >= rec.length:
                continue
            blob_sha = registry.blobs.put_bytes(enc.blob)
            stored.append(StoredEncoding(rec.name, rec.version, enc.codec, key, blob_sha, enc.size))
        registry.store.put_encodings(rec.name, rec.version, stored)
        log.info(
            "%s %s: encodings %s",
            rec.name,
            rec.version,
            ", ".join(f"{s.codec}{' from ' + s.base_sha256[:8] if s.base_sha256 else ''} {s.length} B" for s in stored),
        )
        return stored
    except Exception:
        log.exception("%s %s: precomputing encodings failed; vehicles get the full file", rec.name, rec.version)
        return []


def stored_encodings(registry: Registry, name: str, version: str) -> list[StoredEncoding]:
    return registry.store.list_encodings(name, version)


def best_offer(registry: Registry, offer: Offer, installed_sha256: str | None) -> Offer:
    """The offer with the smallest encoding usable by a vehicle that has
    ``installed_sha256`` (or nothing) installed; the full file otherwise."""
    usable = [
        s
        for s in stored_encodings(registry, offer.name, offer.version)
        if s.base_sha256 == "" or s.base_sha256 == installed_sha256
    ]
    # Smallest first; one whose blob fails its check is out of service: the next one, or the full file.
    s = next((e for e in sorted(usable, key=lambda e: e.length) if registry.guard.usable(e.blob_sha256)), None)
    if s is None or s.length >= offer.download_length:
        return offer
    return replace(
        offer,
        encoding=s.codec,
        download_path=f"{PATH_PREFIX}{s.blob_sha256}",
        download_length=s.length,
        base_sha256=s.base_sha256,
    )


def open_encoding(registry: Registry, path: str) -> tuple[BinaryIO, int]:
    """Open ``encodings/<blob sha256>`` for a Download call."""
    from server.registry import RegistryError
    from server.storage import BlobNotFound

    if not path.startswith(PATH_PREFIX):
        raise RegistryError("not_found", f"no encoding {path!r}")
    digest = path[len(PATH_PREFIX) :]
    if registry.store.encoding_by_blob(digest) is not None and not registry.guard.usable(digest):
        raise RegistryError("not_found", f"encoding {path!r} is out of service: its blob failed its sha256 check")
    try:
        return registry.blobs.open(digest), registry.blobs.size(digest)
    except BlobNotFound as e:
        raise RegistryError("not_found", f"no encoding {path!r}: {e}") from None
