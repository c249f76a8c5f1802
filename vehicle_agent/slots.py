"""A/B model slots under the agent's state directory, switched atomically.

Layout, per model name::

    STATE/slots/<name>/a/model.onnx
    STATE/slots/<name>/b/model.onnx
    STATE/slots.json            which slot of each model is active, and what it holds

A new version is written into the inactive slot and fsynced before
``slots.json`` is replaced (temp file, fsync, rename, directory fsync) to make
it active: after a power cut the agent finds either the old or the new slot
active, each complete and verified, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelpack.fsio import atomic_write_text, fsync_dir

log = logging.getLogger(__name__)

SLOTS = ("a", "b")
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class SlotRecord:
    """What one slot holds: a verified model version."""

    version: str
    sha256: str
    length: int
    target_path: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelSlots:
    active: str | None = None
    slots: dict[str, SlotRecord] = field(default_factory=dict)

    def active_record(self) -> SlotRecord | None:
        return self.slots.get(self.active) if self.active else None

    def inactive(self) -> str:
        return "b" if self.active == "a" else "a"


class SlotStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_file = self.root / "slots.json"

    def model_path(self, name: str, slot: str) -> Path:
        return self.root / "slots" / name / slot / MODEL_FILE

    def load(self) -> dict[str, ModelSlots]:
        if not self._state_file.exists():
            return {}
        raw = json.loads(self._state_file.read_text())
        return {
            name: ModelSlots(
                active=m.get("active"),
                slots={s: SlotRecord(**r) for s, r in m.get("slots", {}).items()},
            )
            for name, m in raw.items()
        }

    def _save(self, state: dict[str, ModelSlots]) -> None:
        raw = {
            name: {"active": m.active, "slots": {s: asdict(r) for s, r in m.slots.items()}}
            for name, m in state.items()
        }
        atomic_write_text(self._state_file, json.dumps(raw, indent=1, sort_keys=True))

    def stage(self, name: str, src: Path, record: SlotRecord, move: bool = False) -> str:
        """Put a verified file into the inactive slot; return the slot name.

        ``move`` renames instead of copying (same filesystem): no second copy
        of the model on a small disk.
        """
        state = self.load()
        m = state.setdefault(name, ModelSlots())
        slot = m.inactive()
        dest = self.model_path(name, slot)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            with open(src, "rb") as f:
                os.fsync(f.fileno())
            os.replace(src, dest)
        else:
            tmp = dest.with_suffix(".staging")
            shutil.copyfile(src, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        fsync_dir(dest.parent)
        m.slots[slot] = record
        self._save(state)
        return slot

    def activate(self, name: str, slot: str | None) -> None:
        """The commit point of an install: one atomic rename of slots.json.

        ``None`` deactivates the model (a first install that failed its health window).
        """
        state = self.load()
        m = state[name]
        if slot is not None and slot not in m.slots:
            raise ValueError(f"slot {slot} of {name} holds nothing")
        m.active = slot
        self._save(state)
        log.info(
            "%s: slot %s active (%s)", name, slot, m.slots[slot].version if slot else "nothing"
        )

    def remove(self, name: str, slot: str) -> int:
        """Forget a slot, then delete its file (record first: a crash leaves an orphan file, not a
        record pointing at nothing). Returns the bytes freed."""
        state = self.load()
        m = state.get(name)
        if m is None or slot == m.active:
            raise ValueError(f"refusing to remove the active slot {slot} of {name}")
        if slot in m.slots:
            del m.slots[slot]
            self._save(state)
        path = self.model_path(name, slot)
        size = path.stat().st_size if path.exists() else 0
        path.unlink(missing_ok=True)
        return size

    def verify(self, name: str, slot: str) -> bool:
        """Does the slot's file still match what was installed into it?"""
        m = self.load().get(name)
        if m is None or slot not in m.slots:
            return False
        path = self.model_path(name, slot)
        if not path.exists():
            return False
        rec = m.slots[slot]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() == rec.sha256 and path.stat().st_size == rec.length
