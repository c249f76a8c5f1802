"""Fetch an update as a transport encoding (a delta or a compressed model)
and rebuild the exact signed model bytes from it.

The encoding is only a way to move bytes: the rebuilt model is checked
against the TUF-signed length and sha256 before it is written where anything
else can see it. Every failure (the installed model is not the patch's base,
a damaged or truncated encoding, a transport error) returns ``None`` with the
reason, and the caller falls back to downloading the full target.

Memory: the installed model, the encoding (bounded by the offer's length and
at most the signed target length plus a header), and one buffer of the signed
target length, plus the scratch of one tensor while decoding.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from modelpack import codecs
from ota.v1 import ota_pb2
from vehicle_agent.transport import RegistryClient, TransportError

log = logging.getLogger(__name__)


@dataclass
class Rebuilt:
    path: Path
    bytes_fetched: int
    encoding: str


def fetch_and_rebuild(
    client: RegistryClient,
    offer: ota_pb2.UpdateOffer,
    target: TargetFile,
    installed_model: Path | None,
    dest_dir: Path,
    vehicle_id: str = "",
) -> tuple[Rebuilt | None, str]:
    """Download ``offer``'s encoding and rebuild the target; (result, reason)."""
    if not offer.encoding or offer.encoding == "full" or not offer.download_path:
        return None, "no encoding offered"
    limit = target.length + codecs.HEADER_SIZE
    if offer.download_length > limit:
        return None, f"encoding of {offer.download_length} B is larger than the signed model ({target.length} B)"
    base: bytes | None = None
    if offer.base_sha256:
        if installed_model is None or not installed_model.exists():
            return None, "delta offered but no model is installed"
        base = installed_model.read_bytes()
        if hashlib.sha256(base).hexdigest() != offer.base_sha256:
            return None, "delta is for another base than the installed model"
    blob = bytearray()
    try:
        for chunk in client.download(ota_pb2.FILE_KIND_ENCODING, offer.download_path, 0, limit, vehicle_id):
            if chunk.offset != len(blob):
                return None, f"encoding chunk at offset {chunk.offset}, expected {len(blob)}"
            blob += chunk.data
            if len(blob) > limit:
                return None, "registry sent more than the bounded encoding length"
    except (TransportError, FileNotFoundError) as e:
        return None, f"encoding download failed: {e}"
    fetched = len(blob)
    try:
        data = codecs.decode(bytes(blob), base, max_target_length=target.length)
    except codecs.CodecError as e:
        return None, f"encoding refused: {e}"
    # The encoding's own header promised a hash; only the signed one counts.
    if len(data) != target.length or hashlib.sha256(data).hexdigest() != target.hashes.get("sha256"):
        return None, "rebuilt model does not match its signed hash and length"
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{target.hashes['sha256']}.rebuilt"
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Rebuilt(path, fetched, offer.encoding), ""
