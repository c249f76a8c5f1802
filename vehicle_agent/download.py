"""Resumable, bounded downloads of signed targets into a partial file.

The partial file survives a dropped connection or a restart of the agent: the
next attempt asks the registry for the bytes from the partial file's length
on. The signed length bounds what is accepted (an endless-data attack stops at
``length``), and nothing is trusted until the whole file matches the signed
hashes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import TargetFile

from ota.v1 import ota_pb2
from vehicle_agent.transport import RegistryClient, TransportError

log = logging.getLogger(__name__)


class DownloadFailed(Exception):
    """The bytes could not be fetched (network) or do not verify (tampering)."""

    def __init__(self, message: str, tampered: bool = False) -> None:
        super().__init__(message)
        self.tampered = tampered


@dataclass
class DownloadResult:
    path: Path
    bytes_fetched: int  # over the wire in this call (excludes bytes resumed from disk)
    resumed_from: int


ProgressFn = Callable[[int, int], None]


def download_target(
    client: RegistryClient,
    download_path: str,
    target: TargetFile,
    dest_dir: Path,
    vehicle_id: str = "",
    max_attempts: int = 4,
    progress: ProgressFn | None = None,
) -> DownloadResult:
    """Fetch ``download_path`` into ``dest_dir``, resuming, then verify it."""
    sha = target.hashes["sha256"]
    part = Path(dest_dir) / f"{sha}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    resumed_from = part.stat().st_size if part.exists() else 0
    if resumed_from > target.length:
        part.unlink()  # longer than signed: cannot be a prefix of the target
        resumed_from = 0
    fetched = 0
    attempts = 0
    with open(part, "ab") as f:
        while f.tell() < target.length:
            attempts += 1
            offset = f.tell()
            try:
                for chunk in client.download(
                    ota_pb2.FILE_KIND_TARGET,
                    download_path,
                    offset,
                    max_bytes=target.length - offset,
                    vehicle_id=vehicle_id,
                ):
                    if chunk.offset != f.tell():
                        raise TransportError(f"chunk at offset {chunk.offset}, expected {f.tell()}")
                    room = target.length - f.tell()
                    if len(chunk.data) > room:
                        raise DownloadFailed(
                            f"{download_path}: registry sent more than the signed length {target.length} B",
                            tampered=True,
                        )
                    f.write(chunk.data)
                    fetched += len(chunk.data)
                    if progress:
                        progress(f.tell(), target.length)
            except TransportError as e:
                if e.code == "RESOURCE_EXHAUSTED":
                    raise DownloadFailed(f"{download_path}: registry sent an oversized message: {e}",
                                         tampered=True) from None
                f.flush()
                os.fsync(f.fileno())
                if attempts >= max_attempts:
                    raise DownloadFailed(f"{download_path}: gave up after {attempts} attempts: {e}") from None
                log.info("download of %s broke at %d B (%s); resuming", download_path, f.tell(), e)
                continue
            except FileNotFoundError as e:
                raise DownloadFailed(f"{download_path}: {e}") from None
            if f.tell() < target.length and attempts >= max_attempts:
                raise DownloadFailed(f"{download_path}: stream ended at {f.tell()} of {target.length} B")
        f.flush()
        os.fsync(f.fileno())
    with open(part, "rb") as f:
        try:
            target.verify_length_and_hashes(f)
        except LengthOrHashMismatchError as e:
            part.unlink(missing_ok=True)  # a tampered prefix must not be resumed from
            raise DownloadFailed(f"{download_path} does not match its signed hash/length: {e}", tampered=True) from None
    return DownloadResult(path=part, bytes_fetched=fetched, resumed_from=resumed_from)
