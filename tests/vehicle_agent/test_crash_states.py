"""Power cuts that lose the page cache, replayed: every crash state of a delta update.

The real agent (in this process) installs a delta update while ``crashfs.Recorder``
records every file-system operation under its state directory. Each crash state
keeps only what was made durable (see ``crashfs``); a fresh agent is started on each
one, offline, and must serve a complete model whose bytes hash to the signed value of
the old or the new version, and both repositories' TUF metadata (``tuf/``,
``tuf-director/``, written by python-tuf through ``trust.DurableUpdater``) must be
complete: the trusted root loads, and each of timestamp/snapshot/targets parses and is
signed by its root's keys for its role. Short by default (an even sample of the distinct states);
``OTA_CRASH_FULL=1`` starts the agent on every one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from modelpack import fsio
from testkit.helpers import publish_released
from testkit.variants import successor
from tests.vehicle_agent.crashfs import Op, Recorder, materialize
from vehicle_agent import trust
from vehicle_agent.agent import VehicleAgent

NAME = "squeezenet1.0"
FULL = os.environ.get("OTA_CRASH_FULL", "") not in ("", "0")
SAMPLE = 30  # states started in the short run
STATE_FILES = ("journal.json", "slots.json", "trust.json")
TUF_DIRS = ("tuf", "tuf-director")
TUF_ROLES = ("timestamp", "snapshot", "targets")


def _metadata_problem(state: Path) -> str:
    """Why the TUF metadata left in ``state`` cannot start a trust chain ("" when it can):
    what the next check-in loads before it asks the registry for anything newer."""
    for d in TUF_DIRS:
        md_dir = state / d
        try:
            trusted = TrustedMetadataSet((md_dir / "root.json").read_bytes(), EnvelopeType.METADATA)
            while (
                nxt := md_dir / "root_history" / f"{trusted.root.version + 1}.root.json"
            ).exists():
                trusted.update_root(nxt.read_bytes())
        except Exception as e:  # missing, empty, torn, badly signed
            return f"{d}/root.json: {type(e).__name__}: {e}"
        for role in TUF_ROLES:
            try:
                md = Metadata.from_bytes((md_dir / f"{role}.json").read_bytes())
                if md.signed.type != role:
                    return f"{d}/{role}.json holds {md.signed.type}"
                trusted.root.verify_delegate(role, md.signed_bytes, md.signatures)
            except Exception as e:
                return f"{d}/{role}.json: {type(e).__name__}: {e}"
    return ""


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
    started = 0
    for n, (k, p, tree) in enumerate(chosen):
        started += 1
        state = work / f"s{n}"
        materialize(tree, state)
        problem = _metadata_problem(state)  # as the cut left it, before the agent touches it
        try:
            sha = _served_after_restart(registry_server, state)
        except Exception as e:  # a state file that does not parse, a crash on start: torn
            sha = f"start failed: {type(e).__name__}: {e}"
        if problem:
            torn.append(
                f"crash after op {k}/{len(recorder.ops)}, {p} pending metadata ops persisted: "
                f"TUF metadata: {problem}"
            )
        elif sha == old:
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
        "tuf_writes": len(_tuf_renames(recorder)),
        "states": len(states),
        "tried": started,
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
        f"\ncrash-state replay: {r['ops']} file-system operations ({r['tuf_writes']} TUF metadata "
        f"files replaced), {r['states']} distinct crash states, {r['tried']} started: "
        f"{len(r['torn'])} torn, {r['old']} served the old version, {r['new']} the new"
    )
    assert r["torn"] == [], r["torn"][:5]
    assert r["tuf_writes"] >= 6  # both repositories' timestamp, snapshot, targets at least
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


def _tuf_renames(recorder: Recorder) -> list[tuple[int, Op]]:
    """(index, op) of each rename into a TUF metadata directory of the state directory."""
    root = Path(recorder.root)
    dirs = {str(root / d) for d in TUF_DIRS} | {str(root / d / "root_history") for d in TUF_DIRS}
    return [(i, op) for i, op in enumerate(recorder.ops) if op[0] == "rename" and op[3] in dirs]


def test_the_replay_finds_torn_tuf_metadata_without_the_durable_updater(
    registry_server, recorded_update, tmp_path, monkeypatch
) -> None:
    """The check can fail: with python-tuf's own writes back (temporary file renamed into place
    without an fsync, root.json unlinked then symlinked again), a state holds an empty or
    missing metadata file."""
    run, agent, old, new = recorded_update
    monkeypatch.setattr(trust.DurableUpdater, "_persist_file", Updater._persist_file)
    monkeypatch.setattr(trust.DurableUpdater, "_update_root_symlink", Updater._update_root_symlink)
    recorder = Recorder(agent.state_dir)
    run(recorder)

    r = _replay(registry_server, recorder, old, new, tmp_path, SAMPLE if FULL else None, not FULL)

    print(
        f"\nwithout DurableUpdater: {r['states']} distinct crash states, "
        f"{len(r['torn'])} of {r['tried']} started torn; first: {r['torn'][:1]}"
    )
    assert r["torn"], "the replay did not notice python-tuf's writes without fsync"
    assert all("TUF metadata" in t for t in r["torn"]), r["torn"][:3]


def test_tuf_metadata_is_replaced_whole(recorded_update) -> None:
    """Every TUF metadata file the agent writes during a check-in and update (both
    repositories, the root history and the root.json symlink) is a fully written, fsynced
    file (or a new symlink) renamed over the old one, then its directory is fsynced; nothing
    in those directories is written in place or unlinked."""
    run, agent, _, _ = recorded_update
    recorder = Recorder(agent.state_dir)
    run(recorder)
    ops = recorder.ops
    renames = _tuf_renames(recorder)
    tuf_dirs = {op[3] for _, op in renames} | {str(Path(recorder.root) / d) for d in TUF_DIRS}
    for op in ops:
        if op[0] in ("open_w", "unlink"):
            where = os.path.dirname(op[1]) if op[0] == "open_w" else op[1]
            assert where not in tuf_dirs or not op[-1].endswith(".json"), (
                f"{op}: not replaced whole"
            )
    replaced: dict[str, int] = {}
    for i, (_, _sdir, _sname, ddir, dname, ino) in renames:
        made = [o for o in ops[:i] if o[0] == "link" and o[3] == ino]
        if made and len(made[-1]) > 5:  # a symlink: root.json pointing at the root in use
            assert dname == "root.json" and made[-1][5].startswith("root_history/"), made[-1]
        else:
            synced = [o for o in ops[:i] if o[0] == "fsync" and o[1] == ino]
            assert synced, f"{ddir}/{dname}: renamed into place before its data was fsynced"
            Metadata.from_bytes(synced[-1][2])  # the whole new file, signed, not a prefix
        assert any(o[0] == "dirsync" and o[1] == ddir for o in ops[i + 1 :]), (
            f"{ddir}/{dname}: rename not made durable"
        )
        key = f"{os.path.basename(ddir)}/{dname}"
        replaced[key] = replaced.get(key, 0) + 1
    for d in TUF_DIRS:
        for role in TUF_ROLES:
            assert replaced.get(f"{d}/{role}.json", 0) >= 1, (d, role, replaced)
