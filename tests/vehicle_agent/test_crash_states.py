"""Power cuts that lose the page cache, replayed: every crash state of a delta update.

The real agent (in this process) installs a delta update while ``crashfs.Recorder``
records every file-system operation under its state directory. Each crash state
keeps only what was made durable (see ``crashfs``); a fresh agent is started on each
one, offline, and must serve a complete model whose bytes hash to the signed value of
the old or the new version. Short by default (an even sample of the distinct states);
``OTA_CRASH_FULL=1`` starts the agent on every one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from modelpack import fsio
from testkit.helpers import publish_released
from testkit.variants import successor
from tests.vehicle_agent.crashfs import Recorder, materialize
from vehicle_agent.agent import VehicleAgent

NAME = "squeezenet1.0"
FULL = os.environ.get("OTA_CRASH_FULL", "") not in ("", "0")
SAMPLE = 30  # states started in the short run
STATE_FILES = ("journal.json", "slots.json", "trust.json")


@pytest.fixture
def recorded_update(registry_server, make_agent, squeezenet_bytes):
    """An agent serving 1.0.0 installs the 1.0.1 delta, recorded; (recorder, old sha, new sha, agent)."""
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent("car-crash")
    [first] = agent.update_once()
    assert first.status == "installed", first.reason
    reg.director.assign("car-crash", NAME, "1.0.0")  # offered only once its delta exists
    new = publish_released(reg, NAME, "1.0.1", successor(squeezenet_bytes, 1))
    reg.director.assign("car-crash", NAME, "1.0.1")

    def run(recorder: Recorder) -> None:
        with recorder:
            [out] = agent.update_once()
        assert out.status == "installed" and out.encoding != "full", (
            out.status,
            out.encoding,
            out.reason,
        )

    return run, agent, hashlib.sha256(squeezenet_bytes).hexdigest(), new.sha256


def _served_after_restart(registry_server, state: Path) -> str:
    """Start a fresh agent on ``state`` (no network) and return the sha256 of the bytes it serves."""
    cfg = registry_server.agent_config("car-crash", state, address="127.0.0.1:9")  # nobody listens
    agent = VehicleAgent(cfg)
    try:
        served = agent.host.get(NAME)
        if served is None:
            return "nothing served"
        slots = agent.slots.load()[NAME]
        assert slots.active_record() is not None and slots.active_record().sha256 == served.sha256
        on_disk = hashlib.sha256(
            agent.slots.model_path(NAME, slots.active).read_bytes()
        ).hexdigest()
        return (
            on_disk
            if on_disk == served.sha256
            else f"serves {served.sha256[:12]}, slot holds {on_disk[:12]}"
        )
    finally:
        agent.close()


def _replay(
    registry_server,
    recorder: Recorder,
    old: str,
    new: str,
    work: Path,
    sample: int | None,
    first_tear: bool = False,
) -> dict:
    states = list(recorder.crash_states())
    chosen = (
        states
        if sample is None or len(states) <= sample
        else [states[round(i * (len(states) - 1) / (sample - 1))] for i in range(sample)]
    )
    torn = []
    outcome = {"old": 0, "new": 0}
    for n, (k, p, tree) in enumerate(chosen):
        state = work / f"s{n}"
        materialize(tree, state)
        try:
            sha = _served_after_restart(registry_server, state)
        except Exception as e:  # a state file that does not parse, a crash on start: torn
            sha = f"start failed: {type(e).__name__}: {e}"
        if sha == old:
            outcome["old"] += 1
        elif sha == new:
            outcome["new"] += 1
        else:
            torn.append(
                f"crash after op {k}/{len(recorder.ops)}, {p} pending metadata ops persisted: {sha}"
            )
        shutil.rmtree(state, ignore_errors=True)
        if torn and first_tear:
            break
    return {
        "ops": len(recorder.ops),
        "states": len(states),
        "tried": len(chosen),
        "torn": torn,
        **outcome,
    }


def test_every_crash_state_of_a_delta_update_serves_a_verified_model(
    registry_server, recorded_update, tmp_path
) -> None:
    run, agent, old, new = recorded_update
    recorder = Recorder(agent.state_dir)
    run(recorder)

    r = _replay(registry_server, recorder, old, new, tmp_path, None if FULL else SAMPLE)

    print(
        f"\ncrash-state replay: {r['ops']} file-system operations, {r['states']} distinct crash states, "
        f"{r['tried']} started: {len(r['torn'])} torn, {r['old']} served the old version, {r['new']} the new"
    )
    assert r["torn"] == [], r["torn"][:5]
    assert r["old"] > 0 and r["new"] > 0  # the cut points span the commit


def test_the_replay_finds_the_tear_when_one_fsync_is_missing(
    registry_server, recorded_update, tmp_path, monkeypatch
) -> None:
    """The check can fail: without the data fsync in the atomic write (the rename still happens),
    slots.json can reach the disk renamed but empty."""
    run, agent, old, new = recorded_update

    def without_fsync(path: Path, data: bytes, mode: int = 0o644) -> None:
        tmp = Path(path).with_name(f".{Path(path).name}.nofsync")
        with open(tmp, "wb") as f:
            f.write(data)  # no f.flush(); os.fsync(): the one removed defence
        os.replace(tmp, path)
        fsio.fsync_dir(Path(path).parent)

    monkeypatch.setattr(fsio, "atomic_write_bytes", without_fsync)
    recorder = Recorder(agent.state_dir)
    run(recorder)

    r = _replay(registry_server, recorder, old, new, tmp_path, None, first_tear=True)

    assert r["torn"], "the replay did not notice a missing fsync"
    assert any("start failed" in t for t in r["torn"])


def test_each_state_file_is_replaced_whole(recorded_update) -> None:
    """journal.json, slots.json, trust.json are never written in place: each new version is a
    fully written, fsynced file renamed over the old one, then the directory is fsynced."""
    run, agent, _, _ = recorded_update
    recorder = Recorder(agent.state_dir)
    run(recorder)
    ops = recorder.ops
    root = str(agent.state_dir.resolve())
    replaced = {name: 0 for name in STATE_FILES}
    for i, op in enumerate(ops):
        if op[0] == "open_w":
            assert os.path.basename(op[1]) not in STATE_FILES or os.path.dirname(op[1]) != root, (
                f"{op[1]} written in place"
            )
        if op[0] == "rename" and op[3] == root and op[4] in STATE_FILES:
            ino = op[5]
            synced = [o for o in ops[:i] if o[0] == "fsync" and o[1] == ino]
            assert synced, f"{op[4]}: renamed into place before its data was fsynced"
            json.loads(synced[-1][2])  # the whole new file, not a prefix
            assert any(o[0] == "dirsync" and o[1] == root for o in ops[i + 1 :]), (
                f"{op[4]}: rename not made durable"
            )
            replaced[op[4]] += 1
    assert replaced["journal.json"] >= 4 and replaced["slots.json"] >= 2, replaced
