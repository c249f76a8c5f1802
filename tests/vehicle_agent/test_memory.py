"""Memory admission: a new model is loaded beside the served ones only when the budget allows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modelpack.runtime import read_model_info
from testkit.variants import successor
from vehicle_agent.engine import StepFailed
from vehicle_agent.journal import Job
from vehicle_agent.memory import MB, MemoryBudget, cgroup_memory_limit, estimated_cost
from vehicle_agent.runtime import ModelHost, OrtRuntime
from vehicle_agent.slots import SlotRecord, SlotStore

NAME = "squeezenet1.0"


def test_the_budget_is_the_cgroups_memory_limit_v1_or_v2(tmp_path: Path) -> None:
    (tmp_path / "memory/car").mkdir(parents=True)
    (tmp_path / "memory/car/memory.limit_in_bytes").write_text(str(512 * MB))
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc/memory.max").write_text(f"{768 * MB}\n")
    v1, v2, none = tmp_path / "v1", tmp_path / "v2", tmp_path / "none"
    v1.write_text("5:memory:/car\n4:cpu:/car\n")
    v2.write_text("0::/svc\n")
    none.write_text("0::/nowhere\n")

    assert cgroup_memory_limit(v1, tmp_path) == 512 * MB
    assert cgroup_memory_limit(v2, tmp_path) == 768 * MB
    assert cgroup_memory_limit(none, tmp_path) is None


@pytest.fixture
def serving(tmp_path: Path, squeezenet_bytes: bytes):
    """SqueezeNet 1.0.0 served, 1.0.1 staged in the other slot; (slots, host, job of 1.0.1)."""
    info = read_model_info(squeezenet_bytes)
    new = successor(squeezenet_bytes, 1)
    slots = SlotStore(tmp_path)
    for version, data in (("1.0.0", squeezenet_bytes), ("1.0.1", new)):
        src = tmp_path / f"{version}.onnx"
        src.write_bytes(data)
        slot = slots.stage(
            NAME,
            src,
            SlotRecord(
                version, hashlib.sha256(data).hexdigest(), len(data), model_info=info.to_dict()
            ),
        )
        if version == "1.0.0":
            slots.activate(NAME, slot)
    host = ModelHost()
    host.swap(NAME, OrtRuntime(host, slots).load_slot(NAME, "a"))
    job = Job(NAME, "1.0.1", hashlib.sha256(new).hexdigest(), len(new), model_info=info.to_dict())
    return slots, host, job


def test_a_model_that_does_not_fit_beside_the_served_ones_is_refused_and_the_old_one_serves(
    serving,
) -> None:
    slots, host, job = serving
    # 8 MB left: SqueezeNet needs ~40. The process's size is fixed here, not read: the runtime
    # trims the heap before admitting (memory.release_free_memory), which on a big test worker frees more
    # than 8 MB and made this depend on what ran before it in the same process.
    base = 200 * MB
    budget = MemoryBudget(limit=int((base + 8 * MB) / 0.8), rss=lambda: base)
    runtime = OrtRuntime(host, slots, budget=budget)

    with pytest.raises(
        StepFailed, match=r"not enough memory to load squeezenet1.0 1.0.1 .* MB budget"
    ):
        runtime.prepare(job, "b")

    assert host.get(NAME).version == "1.0.0"


def test_without_room_for_the_rollback_copy_models_are_swapped_one_at_a_time(serving) -> None:
    slots, host, job = serving
    host.swap(
        NAME, OrtRuntime(host, slots).load_slot(NAME, "a")
    )  # the version before, kept for rollback
    old = host.get(NAME)
    assert host.previous(NAME) is not None
    need = estimated_cost(job.length, old.cost)
    # The process: a fixed base plus the rollback copy's memory while it is held.
    base = 200 * MB
    budget = MemoryBudget(
        limit=int((base + need + MB) / 0.8),
        rss=lambda: base + (need if host.previous(NAME) is not None else 0),
    )
    runtime = OrtRuntime(host, slots, budget=budget)

    candidate = runtime.prepare(job, "b")

    assert host.previous(NAME) is None  # the rollback copy made room for the candidate
    assert host.get(NAME) is old  # and the served model served on throughout
    runtime.swap(NAME, candidate)
    assert host.get(NAME).version == "1.0.1"
    runtime.restore(NAME, "a")  # a rollback still works
    assert host.get(NAME).version == "1.0.0"


_FREED_BLOCKS = """
import sys
import numpy as np
from vehicle_agent.memory import process_rss, tune_malloc
tuned = sys.argv[1] == "tuned" and tune_malloc()
np.full(16 << 17, 1.0)  # one 16 MB block freed: glibc's dynamic threshold rises to it
before = process_rss()
blocks = [np.full(1 << 17, 1.0) for _ in range(60)]  # 60 x 1 MB, like activation buffers
still_used = np.full(1 << 17, 1.0)  # allocated after them: the heap cannot shrink past it
del blocks
print(tuned, (process_rss() - before) >> 20)
"""


def test_tuned_malloc_gives_freed_large_blocks_back(tmp_path: Path) -> None:
    """After one large block was freed, glibc serves MB-sized blocks from the heap and keeps
    them resident once freed; with ``tune_malloc`` (``ota agent run``) they are returned."""
    import subprocess
    import sys

    def kept(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _FREED_BLOCKS, mode], capture_output=True, text=True, check=True
        ).stdout.split()
        return out[0], int(out[1])

    (tuned, with_tune), (_, without) = kept("tuned"), kept("default")
    assert tuned == "True"
    assert with_tune < 10 and without > 40, (with_tune, without)


def test_a_session_is_loaded_from_its_file_without_a_copy_in_python(
    tmp_path: Path, squeezenet_bytes: bytes
) -> None:
    """ONNX Runtime reads the slot file itself: no Python bytes of the model while it loads."""
    import tracemalloc

    from vehicle_agent.runtime import load_session

    model = tmp_path / "m.onnx"
    model.write_bytes(squeezenet_bytes)
    tracemalloc.start()
    try:
        load_session(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(squeezenet_bytes) // 4, (peak, len(squeezenet_bytes))
