"""ONNX Runtime on the vehicle: prove a staged model, host the served ones, swap.

``ModelHost`` holds the model served under each name. A request takes a
reference to the current ``LoadedModel`` and runs on it to the end; a swap only
replaces the reference, so a request in flight finishes on the old session and
the next one runs on the new one, and nobody waits for a load (loading and
self-testing happen beside, before the swap). The previous model stays loaded
until the new one is confirmed, so a rollback is another reference swap.

``OrtRuntime`` is the engine's Runtime plug-in over a ``ModelHost``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelpack.metadata import ModelInfo
from modelpack.runtime import make_session
from modelpack.selftest import run_selftest
from vehicle_agent.engine import StepFailed, Verdict
from vehicle_agent.health import HealthPolicy, ServingStats
from vehicle_agent.journal import Job
from vehicle_agent.memory import MemoryBudget, estimated_cost, process_rss, release_free_memory
from vehicle_agent.slots import SlotStore

log = logging.getLogger(__name__)


class SelfTestFailed(Exception):
    pass


class ModelFault(Exception):
    """The model itself misbehaved on a well-formed input (counts against its health)."""


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    info: ModelInfo
    version: str
    sha256: str
    stats: ServingStats = field(default_factory=ServingStats)
    swapped_in_at: float = 0.0
    cost: int = 0  # resident bytes its load and first inference took (measured)


def load_session(path: Path) -> ort.InferenceSession:
    # No arena: a session gives its activation memory back after each run instead of
    # keeping its peak; the agent holds several sessions in one budget (same latency, measured).
    return make_session(Path(path), memory_arena=False)


def model_info(d: dict) -> ModelInfo:
    try:
        return ModelInfo.from_dict(d) if d else ModelInfo()
    except (TypeError, ValueError) as e:
        raise SelfTestFailed(f"signed model_info is malformed: {e}") from None


def self_test(session: ort.InferenceSession, info: ModelInfo) -> None:
    """Run the signed golden input and compare with the signed expected output.

    A model published without a golden vector still has to run on a
    well-formed input and give finite outputs; that check is weaker, and the
    registry warns the publisher about it.
    """
    if info.selftest is not None:
        result = run_selftest(session, info)
        if not result.ok:
            raise SelfTestFailed(result.reason)
        return
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    try:
        out = np.asarray(session.run(None, {inp.name: x})[0])
    except Exception as e:  # ORT raises its own exception types
        raise SelfTestFailed(f"inference failed: {e}") from None
    if not np.all(np.isfinite(out)):
        raise SelfTestFailed("output contains NaN or Inf")


class ModelHost:
    """The served model of each name, swapped by reference.

    At most ``max_concurrent`` inferences run at once (others wait their
    turn): activation memory is what grows with concurrency, and on the
    vehicle it must stay bounded whatever the number of clients.
    """

    def __init__(self, max_concurrent: int = 2) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._current: dict[str, LoadedModel] = {}
        self._previous: dict[str, LoadedModel] = {}
        self._baseline_p99: dict[str, float] = {}
        self._lock = threading.Lock()

    def current(self) -> dict[str, LoadedModel]:
        with self._lock:
            return dict(self._current)

    def get(self, name: str) -> LoadedModel | None:
        with self._lock:
            return self._current.get(name)

    def swap(self, name: str, model: LoadedModel | None) -> LoadedModel | None:
        """Serve ``model`` from the next request on; return the one it replaces."""
        with self._lock:
            old = self._current.get(name)
            if model is None:
                self._current.pop(name, None)
            else:
                model.swapped_in_at = time.time()
                model.stats = ServingStats()
                self._current[name] = model
            if old is not None:
                self._previous[name] = old
                samples = old.stats.snapshot()[3]
                self._baseline_p99[name] = old.stats.percentile(99) if samples else 0.0
        log.info(
            "%s: now serving %s (was %s)",
            name,
            model.version if model else "nothing",
            old.version if old else "nothing",
        )
        return old

    def previous(self, name: str) -> LoadedModel | None:
        with self._lock:
            return self._previous.get(name)

    def baseline_p99(self, name: str) -> float:
        with self._lock:
            return self._baseline_p99.get(name, 0.0)

    def drop_previous(self, name: str) -> None:
        with self._lock:
            self._previous.pop(name, None)  # the session is freed when its last request ends

    def drop_all_previous(self) -> list[str]:
        """Give up every rollback copy kept in memory; the names whose copy was dropped."""
        with self._lock:
            names = sorted(self._previous)
            self._previous.clear()
        return names

    def run(self, name: str, x: np.ndarray) -> tuple[np.ndarray, LoadedModel]:
        """Run the current model on a preprocessed input; the answer and who gave it."""
        with self._slots:
            model = self.get(name)  # taken once: a swap now does not affect this request
            if model is None:
                raise LookupError(f"no model {name!r} is served")
            t = time.perf_counter()
            try:
                out = np.asarray(model.session.run(None, {model.info.input_name: x})[0])
            except Exception as e:  # ORT's own exception types
                model.stats.record((time.perf_counter() - t) * 1e3, f"inference failed: {e}")
                raise ModelFault(f"{name} {model.version}: inference failed: {e}") from None
            ms = (time.perf_counter() - t) * 1e3
        if not np.all(np.isfinite(out)):
            model.stats.record(ms, "output has NaN or infinite values")
            raise ModelFault(f"{name} {model.version}: output has NaN or infinite values")
        model.stats.record(ms)
        return out, model


class OrtRuntime:
    """The engine's Runtime: load + self-test beside, swap, restore, judge health."""

    def __init__(
        self,
        host: ModelHost,
        slots: SlotStore,
        policy: HealthPolicy = HealthPolicy(),
        budget: MemoryBudget | float | None = None,
    ) -> None:
        self.host = host
        self.slots = slots
        self.policy = policy
        # A float is a budget in MB (--memory-budget); None: the cgroup's limit, if any.
        self.budget = budget if isinstance(budget, MemoryBudget) else MemoryBudget.detect(budget)

    def load_slot(self, name: str, slot: str) -> LoadedModel:
        rec = self.slots.load()[name].slots[slot]
        before = process_rss()
        session = load_session(self.slots.model_path(name, slot))
        return LoadedModel(
            session,
            model_info(rec.model_info),
            rec.version,
            rec.sha256,
            cost=max(0, process_rss() - before),
        )

    def admit(self, job: Job) -> None:
        """Load ``job`` beside the served models only if the memory budget allows it
        (``memory.py``): else drop the rollback copies first, else refuse for now."""
        served = self.host.get(job.name)
        need = estimated_cost(job.length, served.cost if served else 0)
        what = f"{job.name} {job.version}"
        if not self.budget.refusal(need, what):
            return
        dropped = self.host.drop_all_previous()
        if dropped:
            log.warning(
                "memory: %s does not fit beside the served models and their rollback copies; dropped the "
                "in-memory previous versions of %s (a rollback reloads them from their slots)",
                what,
                ", ".join(dropped),
            )
        reason = self.budget.refusal(need, what)
        if reason:
            raise StepFailed(reason)

    def prepare(self, job: Job, slot: str) -> LoadedModel:
        self.admit(job)
        before = process_rss()
        try:
            info = model_info(job.model_info)
            session = load_session(self.slots.model_path(job.name, slot))
        except SelfTestFailed as e:
            raise StepFailed(str(e), reject=True) from None
        except Exception as e:  # ORT load errors
            raise StepFailed(f"model does not load in ONNX Runtime: {e}", reject=True) from None
        try:
            self_test(session, info)
        except SelfTestFailed as e:
            raise StepFailed(f"self-test failed: {e}", reject=True) from None
        cost = max(0, process_rss() - before)  # measured before the trim: what the load took
        release_free_memory()  # the self-test's activations, the rebuild's buffers
        return LoadedModel(session, info, job.version, job.sha256, cost=cost)

    def swap(self, name: str, candidate: LoadedModel) -> None:
        self.host.swap(name, candidate)

    def restore(self, name: str, slot: str | None) -> None:
        prev = self.host.previous(name)
        if slot is None:
            self.host.swap(name, None)
        elif prev is not None:
            self.host.swap(name, prev)
        else:  # after a restart the previous model is not in memory: load it
            self.host.swap(name, self.load_slot(name, slot))
        self.host.drop_previous(name)

    def health(self, name: str, since: float) -> Verdict:
        model = self.host.get(name)
        if model is None:
            return Verdict("fail", "no model is served")
        return self.policy.judge(
            model.stats, self.host.baseline_p99(name) or None, time.time() - since
        )

    def release_previous(self, name: str) -> None:
        self.host.drop_previous(name)
