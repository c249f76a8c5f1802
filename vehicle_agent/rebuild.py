"""Rebuild the exact signed model bytes from a transport encoding (a delta or a
compressed model): the engine's Rebuilder, called between download and verify.

The encoding is only a way to move bytes: the rebuilt model is checked
against the TUF-signed length and sha256 (the engine's Verifier) before it is
staged where anything else can see it. Every failure (the installed model is
not the patch's base, a damaged or truncated encoding) raises ``StepFailed``
with the reason, and the engine falls back to downloading the full target.

The encoding itself arrives like any download: resumable, into a ``.part``
file bounded by the offered length (checked against the signed target length
plus a header when the job is made).

Memory: the installed model, the encoding, and one buffer of the signed
target length, plus the scratch of one tensor while decoding.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypedDict

from modelpack import codecs
from otawire.v1 import ota_pb2
from otawire.wire import ENCODING, to_str
from vehicle_agent.engine import StepFailed
from vehicle_agent.journal import Job
from vehicle_agent.slots import SlotStore

log = logging.getLogger(__name__)


def encoding_bound(target_length: int) -> int:
    """The most bytes an encoding of a ``target_length`` model may take on the wire."""
    return target_length + codecs.HEADER_SIZE


decodable = codecs.decodable  # the encodings this car can decode, named at check-in


class Fallback(TypedDict, total=False):
    """The ``Job`` fields of an offered stand-alone fallback encoding (none: no usable one)."""

    fallback_encoding: str
    fallback_download_path: str
    fallback_download_length: int


def offered_fallback(offer: ota_pb2.UpdateOffer, target_length: int) -> Fallback:
    """The stand-alone encoding offered with a delta, as ``Job`` fields, when a
    decoder for it runs here and its (unsigned) length is bounded; else none."""
    fallback = to_str(ENCODING, offer.fallback_encoding)
    if (
        fallback not in codecs.decodable()
        or not offer.fallback_download_path
        or not 0 < offer.fallback_download_length <= encoding_bound(target_length)
    ):
        return {}
    return {
        "fallback_encoding": fallback,
        "fallback_download_path": offer.fallback_download_path,
        "fallback_download_length": offer.fallback_download_length,
    }


class CodecRebuilder:
    def __init__(self, slots: SlotStore, work_dir: Path) -> None:
        self.slots = slots
        self.work_dir = Path(work_dir)

    def installed(self, name: str) -> Path | None:
        m = self.slots.load().get(name)
        return self.slots.model_path(name, m.active) if m and m.active else None

    def rebuild(self, job: Job, encoded: Path) -> Path:
        if job.encoding == "full":
            return encoded
        base: bytes | None = None
        if job.base_sha256:
            installed = self.installed(job.name)
            if installed is None or not installed.exists():
                raise StepFailed("delta offered but no model is installed")
            base = installed.read_bytes()
        try:
            # Not hashed here: the job's base digest is the installed model's
            # (checked when the job was made), so a delta whose header names
            # another base is refused before decoding, and a damaged installed
            # file cannot rebuild the target's sha256: decode then hashes it
            # and says "wrong base".
            data = codecs.decode(
                encoded.read_bytes(),
                base,
                max_target_length=job.length,
                base_sha256=bytes.fromhex(job.base_sha256) if job.base_sha256 else None,
            )
        except codecs.BaseMismatchError as e:
            raise StepFailed(
                f"encoding refused: delta is for another base than the installed model ({e})"
            ) from None
        except codecs.CodecError as e:
            raise StepFailed(f"encoding refused: {e}") from None
        except Exception as e:
            # must be a failed step the engine falls back from, not a crash that
            # leaves the update in "verifying" on every restart.
            log.warning(
                "%s %s: the %s decoder cannot run here",
                job.name,
                job.version,
                job.encoding,
                exc_info=True,
            )
            raise StepFailed(
                f"the {job.encoding} decoder cannot run here ({type(e).__name__}: {e})"
            ) from None
        path = self.work_dir / f"{job.sha256}.rebuilt"
        with open(path, "wb") as f:  # rewritten whole after a crash: the verify step judges it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return path
