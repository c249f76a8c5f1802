"""The engine's Disk: free space, A/B slots and the commit point, on a real filesystem.

A car's model partition is small. Before a download starts, the space the
signed length needs (plus room to rebuild a delta) is checked against what the
filesystem has free; if it falls short, leftovers of other downloads and the
inactive slot (the version before the current one) are reclaimed, and if it
still falls short the update is refused with the figures, before a byte is
fetched. The active slot, and the previous one while the new one is still in
its health window, are never touched.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from vehicle_agent.engine import StepFailed
from vehicle_agent.journal import Job
from vehicle_agent.slots import SlotRecord, SlotStore

log = logging.getLogger(__name__)

HEADROOM = 256 * 1024  # journal, slots.json, TUF metadata rewrites


class SlotDisk:
    def __init__(
        self, slots: SlotStore, downloads: Path, have: Callable[[Job], int] | None = None
    ) -> None:
        self.slots = slots
        self.downloads = Path(downloads)
        self.downloads.mkdir(parents=True, exist_ok=True)
        self._have = have or (lambda job: 0)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.downloads).free

    def needed_bytes(self, job: Job) -> int:
        """Still to be written for ``job``: the rest of the download, the rebuilt
        model for a non-full encoding, and headroom for metadata."""
        rest = max(0, job.wire_length - self._have(job))
        rebuild = job.length if job.encoding != "full" else 0
        return rest + rebuild + HEADROOM

    def ensure_room(self, job: Job) -> None:
        need, free = self.needed_bytes(job), self.free_bytes()
        if free >= need:
            return
        freed = self._reclaim(job, need - free)
        free = self.free_bytes()
        if free < need:
            raise StepFailed(
                f"not enough disk space for {job.name} {job.version}: needs {need:,} B "
                f"(signed length {job.length:,} B{', plus delta rebuild' if job.encoding != 'full' else ''}), "
                f"{free:,} B free in {self.downloads} after reclaiming {freed:,} B"
            )
        log.info("%s: reclaimed %d B to make room for %s", job.name, freed, job.version)

    def _reclaim(self, job: Job, short: int) -> int:
        freed = 0
        keep = {f"{job.sha256}.{job.encoding}.part"}
        for leftover in sorted(self.downloads.iterdir()):
            if leftover.name not in keep and leftover.is_file():
                freed += leftover.stat().st_size
                leftover.unlink()
        if freed >= short:
            return freed
        m = self.slots.load().get(job.name)
        if m is not None and m.active is not None:
            # The inactive slot holds the version before the confirmed one: the
            # new version is about to be staged over it anyway.
            inactive = m.inactive()
            if self.slots.model_path(job.name, inactive).exists():
                freed += self.slots.remove(job.name, inactive)
        return freed

    def stage(self, job: Job, path: Path) -> str:
        rec = SlotRecord(
            version=job.version,
            sha256=job.sha256,
            length=job.length,
            target_path=job.target_path,
            model_info=job.model_info,
        )
        return self.slots.stage(job.name, path, rec, move=True)

    def holds(self, name: str, slot: str, sha256: str) -> bool:
        m = self.slots.load().get(name)
        return bool(
            m
            and slot in m.slots
            and m.slots[slot].sha256 == sha256
            and self.slots.verify(name, slot)
        )

    def staged_slot(self, job: Job) -> str | None:
        m = self.slots.load().get(job.name)
        if m is None:
            return None
        inactive = m.inactive()
        return inactive if self.holds(job.name, inactive, job.sha256) else None

    def active_slot(self, name: str) -> str | None:
        m = self.slots.load().get(name)
        return m.active if m else None

    def activate(self, name: str, slot: str | None) -> None:
        self.slots.activate(name, slot)

    def collect(self, name: str, keep: set[str]) -> None:
        """After confirmation: drop slots not kept and this model's download leftovers."""
        m = self.slots.load().get(name)
        if m is not None:
            for slot in list(m.slots):
                if slot not in keep and slot != m.active:
                    self.slots.remove(name, slot)
        active = m.active_record() if m else None
        if active is not None:
            for leftover in self.downloads.glob(f"{active.sha256}.*"):
                leftover.unlink(missing_ok=True)
