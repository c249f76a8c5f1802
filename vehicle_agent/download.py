"""Resumable, bounded downloads of signed targets into a partial file.

The partial file survives a dropped connection or a restart of the agent: the
next attempt asks the registry for the bytes from the partial file's length
on. The signed length bounds what is accepted (an endless-data attack stops at
``length``), and nothing is trusted until the whole file matches the signed
hashes. Failed attempts back off exponentially with jitter up to a cap; an
attempt that made progress resets the count, so a link that drops every few
hundred kilobytes still completes while a dead one gives up quickly.

The registry streams messages of 32 KiB (``otawire.constants.MESSAGE_BYTES``); a
cut loses the message in flight, and the next request starts after the last whole
one. A link that drops more often than a request's first message takes would
never make progress; after an attempt without progress the agent therefore asks
for smaller ranges (``max_bytes``), halving from 256 KiB down to 16 KiB, and
widens them again as they arrive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import TargetFile

from otawire.v1 import ota_pb2
from vehicle_agent.engine import StepFailed
from vehicle_agent.journal import Job
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


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: delay in [d/2, d], d = min(cap, base·factorⁿ)."""

    attempts: int = 8  # consecutive attempts without progress before giving up
    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, failures: int) -> float:
        d = min(self.cap_s, self.base_s * self.factor ** max(0, failures - 1))
        return d / 2 + self.rng.uniform(0, d / 2)


ProgressFn = Callable[[int, int], None]

FIRST_WINDOW = 256 * 1024  # halved from after an attempt without progress on a whole-file request
MIN_WINDOW = 16 * 1024
MAX_WINDOW = 4 * 1024 * 1024
GROW_AFTER = 4  # windowed requests in a row that must arrive before the window doubles


def fetch_resumable(
    client: RegistryClient,
    download_path: str,
    part: Path,
    length: int,
    *,
    kind: ota_pb2.FileKind = ota_pb2.FILE_KIND_TARGET,
    vehicle_id: str = "",
    retry: RetryPolicy = RetryPolicy(),
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Bring ``part`` up to ``length`` bytes of ``download_path``; return bytes fetched.

    Unverified: the caller checks the result against signed hashes.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and part.stat().st_size > length:
        part.unlink()  # longer than signed: cannot be a prefix of the target
    fetched = 0
    failures = 0
    # security (issue 4): the whole fetch must average the client's minimum rate, so a
    # trickling registry (slow retrieval) cannot hold the agent by making a little progress
    # on every retry.
    # Neither the agent's own backoff sleeps nor the time the link was down (no connection
    # could be made: a car out of coverage) count against it (issue 18): a slow but live link
    # that drops out must not be cut as a slow retrieval.
    budget_s = client.config.deadline_for(length - (part.stat().st_size if part.exists() else 0))
    link_down = getattr(client, "link_down_s", lambda: 0.0)
    started = time.monotonic()
    excused = -link_down()  # + sleeps + the link's down time since the start

    def elapsed() -> float:
        return time.monotonic() - started - excused - link_down()

    window = 0  # bytes asked for per request; 0 = all the rest
    streak = 0  # windowed requests completed in a row
    with open(part, "ab") as f:
        while f.tell() < length:
            offset = f.tell()
            want = min(window, length - offset) if window else length - offset
            try:
                for chunk in client.download(
                    kind, download_path, offset, max_bytes=want, vehicle_id=vehicle_id
                ):
                    if chunk.offset != f.tell():
                        raise TransportError(f"chunk at offset {chunk.offset}, expected {f.tell()}")
                    if len(chunk.data) > length - f.tell():
                        raise DownloadFailed(
                            f"{download_path}: registry sent more than the signed length {length} B",
                            tampered=True,
                        )
                    f.write(chunk.data)
                    fetched += len(chunk.data)
                    if progress:
                        progress(f.tell(), length)
                    if elapsed() > budget_s:
                        raise DownloadFailed(
                            f"{download_path}: {fetched:,} B in {elapsed():.1f} s with the link up, below the "
                            f"minimum rate of {client.config.min_rate_bps:,} B/s (slow retrieval?)"
                        )
                if f.tell() < offset + want:
                    raise TransportError(f"stream ended at {f.tell()} of {length} B")
                failures = 0
                streak += 1
                if window and streak >= GROW_AFTER:
                    window, streak = (window * 2 if window < MAX_WINDOW else 0), 0
            except TransportError as e:
                if (
                    e.code == "RESOURCE_EXHAUSTED"
                ):  # a message over our size limit: not a broken link
                    raise DownloadFailed(
                        f"{download_path}: registry sent an oversized message: {e}", tampered=True
                    ) from None
                f.flush()
                os.fsync(f.fileno())  # what we have survives a power cut and is resumed from
                streak = 0
                if f.tell() == offset:
                    window = max(MIN_WINDOW, (window or FIRST_WINDOW) // 2)
                failures = 1 if f.tell() > offset else failures + 1
                if failures >= retry.attempts:
                    raise DownloadFailed(
                        f"{download_path}: gave up after {failures} attempts without progress at "
                        f"{f.tell():,} of {length:,} B: {e}"
                    ) from None
                pause = retry.delay(failures)
                log.info(
                    "download of %s broke at %d B (%s); resuming in %.2f s",
                    download_path,
                    f.tell(),
                    e,
                    pause,
                )
                sleep(pause)
                excused += pause
            except FileNotFoundError as e:
                raise DownloadFailed(f"{download_path}: {e}") from None
        f.flush()
        os.fsync(f.fileno())
    return fetched


def download_target(
    client: RegistryClient,
    download_path: str,
    target: TargetFile,
    dest_dir: Path,
    vehicle_id: str = "",
    max_attempts: int = 4,
    progress: ProgressFn | None = None,
) -> DownloadResult:
    """Fetch ``download_path`` into ``dest_dir``, resuming, then verify it against ``target``."""
    part = Path(dest_dir) / f"{target.hashes['sha256']}.part"
    resumed_from = (
        part.stat().st_size if part.exists() and part.stat().st_size <= target.length else 0
    )
    fetched = fetch_resumable(
        client,
        download_path,
        part,
        target.length,
        vehicle_id=vehicle_id,
        retry=RetryPolicy(attempts=max_attempts, base_s=0.05),
        progress=progress,
    )
    with open(part, "rb") as f:
        try:
            target.verify_length_and_hashes(f)
        except LengthOrHashMismatchError as e:
            part.unlink(missing_ok=True)  # a tampered prefix must not be resumed from
            raise DownloadFailed(
                f"{download_path} does not match its signed hash/length: {e}", tampered=True
            ) from None
    return DownloadResult(path=part, bytes_fetched=fetched, resumed_from=resumed_from)


class TargetFetcher:
    """The engine's Fetcher: resumable download of a job's encoding into ``downloads/``."""

    def __init__(
        self,
        client: RegistryClient,
        downloads: Path,
        vehicle_id: str = "",
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.client = client
        self.downloads = Path(downloads)
        self.vehicle_id = vehicle_id
        self.retry = retry
        self.fetched: dict[
            tuple[str, str], int
        ] = {}  # (sha256, encoding) -> bytes over the wire in this process

    def part_path(self, job: Job) -> Path:
        return self.downloads / f"{job.sha256}.{job.encoding}.part"

    def have(self, job: Job) -> int:
        p = self.part_path(job)
        return p.stat().st_size if p.exists() else 0

    def fetch(self, job: Job, progress: ProgressFn | None = None) -> Path:
        part = self.part_path(job)
        if part.exists() and part.stat().st_size == job.wire_length:
            return part
        before = self.have(job)
        try:
            kind = (
                ota_pb2.FILE_KIND_TARGET if job.encoding == "full" else ota_pb2.FILE_KIND_ENCODING
            )
            fetch_resumable(
                self.client,
                job.download_path,
                part,
                job.wire_length,
                kind=kind,
                vehicle_id=self.vehicle_id,
                retry=self.retry,
                progress=progress,
            )
        except DownloadFailed as e:
            raise StepFailed(str(e), status="attack_detected" if e.tampered else "failed") from None
        finally:  # bytes that arrived count even when the attempt fails (they are resumed from)
            key = (job.sha256, job.encoding)
            self.fetched[key] = self.fetched.get(key, 0) + max(0, self.have(job) - before)
        return part

    def discard(self, job: Job) -> None:
        self.part_path(job).unlink(missing_ok=True)


class HashVerifier:
    """The engine's Verifier: exact signed length and sha256 of the model bytes."""

    def verify(self, job: Job, path: Path) -> None:
        size = path.stat().st_size
        if size != job.length:
            raise StepFailed(
                f"{job.name} {job.version}: {size:,} B, signed length is {job.length:,} B",
                status="attack_detected",
                retry=True,
            )
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != job.sha256:
            raise StepFailed(
                f"{job.name} {job.version} does not match its signed hash "
                f"(got {h.hexdigest()[:16]}…, signed {job.sha256[:16]}…)",
                status="attack_detected",
                retry=True,
            )
