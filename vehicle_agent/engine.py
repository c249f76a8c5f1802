"""The update state machine: pure logic over the journal, with I/O plugged in.

Shaped like python-tuf's ngclient: the engine decides, plug-ins do. It never
opens a socket or an ONNX Runtime session itself; it calls

* a ``Fetcher`` to bring the encoding's bytes to disk (resumable),
* a ``Rebuilder`` to turn an encoding (e.g. a delta) into model bytes,
* a ``Verifier`` to prove those bytes against the signed length and hash,
* a ``Disk`` for free space, A/B slots and the commit point (``slots.json``),
* a ``Runtime`` to load + self-test beside the running model, swap, restore,
  and judge the health window,
* a ``Reporter`` to tell the registry each step.

States: idle → downloading → verifying → staged → activating → active →
confirmed, or failed / rolled_back. Every transition is written to the
journal before the next side effect, so ``recover()`` can finish or undo
whatever a power cut interrupted. ``slots.json`` (the Disk's ``activate``) is
the only commit point for what is served; the journal says what was intended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vehicle_agent.journal import TERMINAL, Entry, Job, Journal, State

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


class StepFailed(Exception):
    """A step could not complete. ``status`` is what gets reported; ``reject``
    remembers the version as bad so it is never downloaded again; ``retry``
    means trying the download again may help (a flipped bit on the link)."""

    def __init__(
        self, reason: str, *, status: str = "failed", reject: bool = False, retry: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.reject = reject
        self.retry = retry


@dataclass(frozen=True)
class Verdict:
    state: str  # "pending" | "ok" | "fail"
    reason: str = ""


class Fetcher(Protocol):
    def fetch(self, job: Job, progress: ProgressFn | None = None) -> Path: ...
    def discard(self, job: Job) -> None: ...


class Rebuilder(Protocol):
    def rebuild(self, job: Job, encoded: Path) -> Path: ...


class Verifier(Protocol):
    def verify(self, job: Job, path: Path) -> None: ...


class Disk(Protocol):
    def ensure_room(self, job: Job) -> None: ...
    def stage(self, job: Job, path: Path) -> str: ...
    def holds(self, name: str, slot: str, sha256: str) -> bool: ...
    def staged_slot(self, job: Job) -> str | None: ...
    def active_slot(self, name: str) -> str | None: ...
    def activate(self, name: str, slot: str | None) -> None: ...
    def collect(self, name: str, keep: set[str]) -> None: ...


class Runtime(Protocol):
    def prepare(self, job: Job, slot: str) -> Any: ...
    def swap(self, name: str, candidate: Any) -> None: ...
    def restore(self, name: str, slot: str | None) -> None: ...
    def health(self, name: str, since: float) -> Verdict: ...
    def release_previous(self, name: str) -> None: ...


class Reporter(Protocol):
    def report(self, entry: Entry, step: str) -> None: ...


class FullRebuilder:
    """The identity rebuild: a "full" encoding already is the model."""

    def rebuild(self, job: Job, encoded: Path) -> Path:
        if job.encoding != "full":
            raise StepFailed(
                f"{job.name} {job.version}: no rebuilder for encoding {job.encoding!r}"
            )
        return encoded


@dataclass(frozen=True)
class EnginePolicy:
    max_verify_failures: int = 3  # hash mismatches per install before calling it an attack
    max_unconfirmed_boots: int = 2  # restarts inside the health window before rolling back
    keep_previous: bool = True  # keep the previous slot after confirmation (fallback on damage)


class UpdateEngine:
    def __init__(
        self,
        journal: Journal,
        disk: Disk,
        fetcher: Fetcher,
        verifier: Verifier,
        runtime: Runtime,
        reporter: Reporter,
        rebuilder: Rebuilder | None = None,
        policy: EnginePolicy = EnginePolicy(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.disk = disk
        self.fetcher = fetcher
        self.verifier = verifier
        self.runtime = runtime
        self.reporter = reporter
        self.rebuilder = rebuilder or FullRebuilder()
        self.policy = policy
        self.clock = clock
        self._candidates: dict[str, Any] = {}  # loaded + self-tested, not yet swapped in
        self._verify_failures: dict[str, int] = {}

    # -- the public face -------------------------------------------------------------
    def install(
        self, job: Job, progress: ProgressFn | None = None, from_version: str = ""
    ) -> Entry:
        """Run ``job`` until it is active (health window running) or terminal.

        An in-flight job for the same bytes is resumed where it stopped; one for
        other bytes is abandoned first (the registry changed its mind).
        """
        entry = self.journal.get(job.name)
        if entry.state == State.ACTIVE:
            return entry  # one update per model at a time: wait for the window
        if entry.state not in TERMINAL and entry.job is not None and entry.job.sha256 != job.sha256:
            entry = self.abandon(job.name, f"superseded by {job.version}")
        if entry.state in TERMINAL or entry.job is None:
            active = self.disk.active_slot(job.name)
            entry = self._put(
                Entry(name=job.name).to(
                    State.DOWNLOADING,
                    job=job,
                    previous_slot=active or "",
                    previous_version=from_version,
                )
            )
            self.reporter.report(entry, "downloading")
        self._verify_failures[job.name] = 0
        while entry.state not in TERMINAL and entry.state != State.ACTIVE:
            entry = self.advance(entry, progress)
        return entry

    def poll(self, name: str) -> Entry:
        """Judge the health window of an active job: confirm or roll back."""
        entry = self.journal.get(name)
        if entry.state != State.ACTIVE or entry.job is None:
            return entry
        verdict = self.runtime.health(name, entry.activated_at)
        if verdict.state == "pending":
            return entry
        if verdict.state == "fail":
            return self.rollback(entry, verdict.reason)
        return self._confirm(entry)

    def abandon(self, name: str, reason: str) -> Entry:
        """Give up an in-flight job that never reached the slots' commit point."""
        entry = self.journal.get(name)
        if entry.job is not None and entry.state in (
            State.DOWNLOADING,
            State.VERIFYING,
            State.STAGED,
        ):
            self.fetcher.discard(entry.job)
            self._candidates.pop(name, None)
            entry = self._put(entry.to(State.FAILED, reason=reason, status="failed"))
            self.reporter.report(entry, "failed")
        return entry

    def recover(self) -> list[Entry]:
        """On start: finish or undo what a power cut interrupted (no network needed).

        downloading / verifying  stay in flight; the next check-in resumes them
        staged                   re-verify the slot, then self-test and activate
        activating               switched already? → active; else back to staged
        active                   restart the health window, unless this job keeps
                                 dying unconfirmed (crash loop) → roll back
        """
        out = []
        for entry in self.journal.entries():
            out.append(self._recover_one(entry))
        return out

    # -- one step ----------------------------------------------------------------------
    def advance(self, entry: Entry, progress: ProgressFn | None = None) -> Entry:
        job = entry.job
        assert job is not None
        try:
            if entry.state == State.DOWNLOADING:
                self.disk.ensure_room(job)
                self.fetcher.fetch(job, progress)
                return self._put(entry.to(State.VERIFYING, attempts=entry.attempts + 1))
            if entry.state == State.VERIFYING:
                return self._verify_and_stage(entry)
            if entry.state == State.STAGED:
                return self._activate(entry)
            if entry.state == State.ACTIVATING:
                return self._recover_activating(entry)
        except StepFailed as e:
            return self._fail(entry, e)
        raise AssertionError(f"advance() from {entry.state}")

    def _verify_and_stage(self, entry: Entry) -> Entry:
        job = entry.job
        assert job is not None
        slot = self.disk.staged_slot(job)  # staged before a crash, journal not yet updated
        if slot is None:
            encoded = self.fetcher.fetch(job)  # a no-op when the .part is complete
            try:
                built = self.rebuilder.rebuild(job, encoded)
                self.verifier.verify(job, built)
            except StepFailed as e:
                self.fetcher.discard(job)  # never resume from bytes that do not verify
                if job.encoding != "full":
                    # A delta that does not rebuild the signed bytes (wrong base, damaged):
                    # the full model is always a way to get them.
                    nxt = job.fallback()
                    log.warning(
                        "%s %s: %s encoding failed (%s); fetching the %s encoding",
                        job.name,
                        job.version,
                        job.encoding,
                        e.reason,
                        nxt.encoding,
                    )
                    return self._put(
                        entry.to(State.DOWNLOADING, job=nxt, reason=f"{job.encoding}: {e.reason}")
                    )
                n = self._verify_failures.get(job.name, 0) + 1
                self._verify_failures[job.name] = n
                entry = entry.to(entry.state, verify_failures=entry.verify_failures + 1)
                if e.retry and n < self.policy.max_verify_failures:
                    log.warning(
                        "%s: %s; downloading again (%d/%d)",
                        job.name,
                        e.reason,
                        n,
                        self.policy.max_verify_failures,
                    )
                    return self._put(entry.to(State.DOWNLOADING))
                if e.retry:
                    e = StepFailed(
                        f"{e.reason} ({n} downloads in a row did not verify)", status=e.status
                    )
                return self._fail(entry, e)
            slot = self.disk.stage(job, built)
            self.fetcher.discard(job)  # the encoding, once rebuilt and staged
        return self._put(entry.to(State.STAGED, slot=slot))

    def _activate(self, entry: Entry) -> Entry:
        job = entry.job
        assert job is not None
        if not self.disk.holds(job.name, entry.slot, job.sha256):
            log.error(
                "%s: staged slot %s no longer holds %s; fetching again",
                job.name,
                entry.slot,
                job.sha256[:12],
            )
            return self._put(entry.to(State.DOWNLOADING))
        candidate = self._candidates.pop(job.name, None) or self.runtime.prepare(job, entry.slot)
        entry = self._put(entry.to(State.ACTIVATING))
        self.disk.activate(job.name, entry.slot)  # the commit point
        self.runtime.swap(job.name, candidate)
        entry = self._put(entry.to(State.ACTIVE, activated_at=self.clock(), boots_in_active=0))
        self.reporter.report(entry, "installed")
        return entry

    def _confirm(self, entry: Entry) -> Entry:
        assert entry.job is not None
        entry = self._put(entry.to(State.CONFIRMED, reason=""))
        self.runtime.release_previous(entry.name)
        keep = {entry.slot} | (
            {entry.previous_slot} if self.policy.keep_previous and entry.previous_slot else set()
        )
        self.disk.collect(entry.name, keep)  # only now: the previous slot was the way back
        self.reporter.report(entry, "confirmed")
        return entry

    def rollback(self, entry: Entry, reason: str) -> Entry:
        """Switch back to the previous slot (or to nothing on a first install)."""
        job = entry.job
        assert job is not None
        log.error("%s %s: rolling back: %s", job.name, job.version, reason)
        entry = self._put(entry.to(State.ACTIVE, rollback_reason=reason))
        target = entry.previous_slot or None
        self.disk.activate(job.name, target)
        self.runtime.restore(job.name, target)
        self.journal.reject(job.sha256, reason)
        entry = self._put(entry.to(State.ROLLED_BACK, reason=reason, status="rolled_back"))
        self.reporter.report(entry, "rolled_back")
        return entry

    def _fail(self, entry: Entry, e: StepFailed) -> Entry:
        job = entry.job
        assert job is not None
        log.error("%s %s: %s", job.name, job.version, e.reason)
        self._candidates.pop(job.name, None)
        if e.reject:
            self.journal.reject(job.sha256, e.reason)
        entry = self._put(entry.to(State.FAILED, reason=e.reason, status=e.status))
        self.reporter.report(entry, e.status)
        return entry

    # -- recovery ----------------------------------------------------------------------
    def _recover_one(self, entry: Entry) -> Entry:
        job = entry.job
        if entry.state in TERMINAL or job is None:
            return entry
        log.warning("%s: recovering a job interrupted in state %s", entry.name, entry.state)
        if entry.state in (State.DOWNLOADING, State.VERIFYING):
            return entry  # nothing served depends on it; the next check-in resumes it
        if entry.state == State.STAGED:
            return self._finish_locally(entry)
        if entry.state == State.ACTIVATING:
            return self._finish_locally(self._recover_activating(entry))
        return self._recover_active(entry)

    def _finish_locally(self, entry: Entry) -> Entry:
        try:
            while entry.state in (State.STAGED, State.ACTIVATING):
                entry = self.advance(entry)
        except StepFailed as e:
            entry = self._fail(entry, e)
        return entry

    def _recover_activating(self, entry: Entry) -> Entry:
        assert entry.job is not None
        if self.disk.active_slot(entry.name) == entry.slot:
            # The switch committed; whatever loaded the active slot at start serves it.
            entry = self._put(entry.to(State.ACTIVE, activated_at=self.clock(), boots_in_active=1))
            self.reporter.report(entry, "installed")
            return entry
        return self._put(entry.to(State.STAGED))

    def _recover_active(self, entry: Entry) -> Entry:
        assert entry.job is not None
        if entry.rollback_reason:
            return self.rollback(entry, entry.rollback_reason)
        if self.disk.active_slot(entry.name) != entry.slot:
            # Start-up fell back to the other slot: the new one did not verify or load.
            reason = f"slot {entry.slot} did not verify or load after a restart"
            self.journal.reject(entry.job.sha256, reason)
            entry = self._put(entry.to(State.ROLLED_BACK, reason=reason, status="rolled_back"))
            self.reporter.report(entry, "rolled_back")
            return entry
        boots = entry.boots_in_active + 1
        if boots > self.policy.max_unconfirmed_boots:
            return self.rollback(
                entry, f"restarted {boots} times before the health window confirmed it"
            )
        return self._put(entry.to(State.ACTIVE, activated_at=self.clock(), boots_in_active=boots))

    def _put(self, entry: Entry) -> Entry:
        return self.journal.put(entry)
