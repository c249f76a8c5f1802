"""The update journal: what the agent was doing for each model, on disk.

One JSON file, ``STATE/journal.json``, replaced atomically on every state
change (temp file, fsync, rename, directory fsync via ``modelpack.fsio``).
After a power cut it holds the last state that was fully written, so the
engine can finish or undo whatever was in flight (see ``engine.recover``).

The journal records intent and progress; ``slots.json`` stays the single
commit point for *which model is served*. Recovery reconciles the two.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelpack.fsio import atomic_write_text
from otawire.paths import consistent_target_path

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.json"
FORMAT = 1


class State(StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"  # fetching the encoding into a resumable .part file
    VERIFYING = "verifying"  # rebuilding (deltas) and checking against the signed hash
    STAGED = "staged"  # verified bytes in the inactive slot, fsynced
    ACTIVATING = "activating"  # self-test passed; the slot switch may or may not have happened
    ACTIVE = "active"  # switched; the health window is running
    CONFIRMED = "confirmed"  # healthy after the window; the previous slot may be collected
    FAILED = "failed"  # refused or broken; the previous model was never left
    ROLLED_BACK = "rolled_back"  # switched, found unhealthy, switched back


TERMINAL = frozenset({State.IDLE, State.CONFIRMED, State.FAILED, State.ROLLED_BACK})


@dataclass(frozen=True)
class Job:
    """One model version to install: only facts taken from signed metadata."""

    name: str
    version: str
    sha256: str
    length: int
    target_path: str = ""
    download_path: str = ""  # what to ask Download for (the encoding's path)
    encoding: str = "full"
    download_length: int = 0  # bytes on the wire for the encoding (0 = length)
    base_sha256: str = ""  # deltas: the model bytes the patch applies to
    model_info: dict[str, Any] = field(default_factory=dict)
    # A delta's stand-alone alternative, tried before the full file if the delta is refused.
    fallback_encoding: str = ""
    fallback_download_path: str = ""
    fallback_download_length: int = 0

    @property
    def wire_length(self) -> int:
        return self.download_length or self.length

    def full(self) -> Job:
        """The same model fetched as itself: the fallback when an encoding fails."""
        return replace(
            self,
            encoding="full",
            download_path=consistent_target_path(self.target_path, self.sha256),
            download_length=0,
            base_sha256="",
            fallback_encoding="",
            fallback_download_path="",
            fallback_download_length=0,
        )

    def fallback(self) -> Job:
        """After a refused encoding: the stand-alone encoding offered with it (it does
        not depend on the refused one; issue 12), else the full model."""
        if not self.fallback_encoding or self.fallback_encoding == self.encoding:
            return self.full()
        return replace(
            self,
            encoding=self.fallback_encoding,
            download_path=self.fallback_download_path,
            download_length=self.fallback_download_length,
            base_sha256="",
            fallback_encoding="",
            fallback_download_path="",
            fallback_download_length=0,
        )


@dataclass(frozen=True)
class Entry:
    """The journal's record for one model name."""

    name: str
    state: State = State.IDLE
    job: Job | None = None
    slot: str = ""  # the slot the job is staged into
    previous_slot: str = ""  # the slot that was active before (rollback target)
    previous_version: str = ""
    reason: str = ""  # why it failed or rolled back
    status: str = ""  # how a failure is reported: "failed" | "attack_detected"
    attempts: int = 0  # download attempts across restarts
    verify_failures: int = 0  # downloads that did not match the signed hash (fetched again)
    boots_in_active: int = 0  # restarts that found this job unconfirmed in ACTIVE
    activated_at: float = 0.0  # wall clock of the switch (health window start)
    rollback_reason: str = ""  # set before a rollback starts, so a crash mid-way finishes it
    updated_at: float = 0.0

    def to(self, state: State, **changes: Any) -> Entry:
        return replace(self, state=state, updated_at=time.time(), **changes)


@dataclass
class JournalData:
    entries: dict[str, Entry] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # sha256 -> why (never retried)


class JournalCorrupt(Exception):
    pass


class Journal:
    """Load and atomically save the journal; a corrupt file is moved aside, not trusted."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / JOURNAL_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data = self._load()

    def _load(self) -> JournalData:
        if not self.path.exists():
            return JournalData()
        try:
            return _decode(json.loads(self.path.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            # Atomic writes make a torn journal impossible; this is outside damage.
            # Serving does not depend on the journal (slots.json does), so start
            # fresh and keep the evidence.
            aside = self.path.with_suffix(f".corrupt-{int(time.time())}")
            self.path.rename(aside)
            log.error(
                "journal %s is unreadable (%s); moved to %s, starting idle", self.path, e, aside
            )
            return JournalData()

    def get(self, name: str) -> Entry:
        return self.data.entries.get(name) or Entry(name=name)

    def put(self, entry: Entry) -> Entry:
        self.data.entries[entry.name] = entry
        self._save()
        log.debug("journal: %s -> %s", entry.name, entry.state)
        return entry

    def reject(self, sha256: str, reason: str) -> None:
        self.data.rejected[sha256] = reason
        self._save()

    def rejected(self, sha256: str) -> str | None:
        return self.data.rejected.get(sha256)

    def entries(self) -> list[Entry]:
        return list(self.data.entries.values())

    def _save(self) -> None:
        raw = {
            "format": FORMAT,
            "entries": {n: _encode_entry(e) for n, e in sorted(self.data.entries.items())},
            "rejected": dict(sorted(self.data.rejected.items())),
        }
        atomic_write_text(self.path, json.dumps(raw, indent=1, sort_keys=True))


def _encode_entry(e: Entry) -> dict[str, Any]:
    d = asdict(e)
    d["state"] = str(e.state)
    return d


def _decode(raw: dict[str, Any]) -> JournalData:
    if raw.get("format") != FORMAT:
        raise ValueError(f"unknown journal format {raw.get('format')!r}")
    entries = {}
    for name, d in raw["entries"].items():
        d = dict(d)
        job = Job(**d.pop("job")) if d.get("job") else None
        d.pop("job", None)
        entries[name] = Entry(job=job, **{**d, "state": State(d["state"])})
    return JournalData(entries=entries, rejected=dict(raw.get("rejected", {})))
