"""Helpers for the scale-out tests: tiny models, and a check of the whole TUF history."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tuf.api.metadata import Metadata, Root

from server.storage import MetadataStore


def tiny_onnx(tag: str) -> bytes:
    """A valid, tiny ONNX model (one Identity node) whose bytes differ per ``tag``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, doc_string=tag, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def heavy_onnx(megabytes: int, seed: int = 0) -> bytes:
    """A valid ONNX model (y = x + W) carrying ``megabytes`` of random float32 weights.

    Larger than the few MB gRPC lets a receiver buffer ahead of the reader, so
    a slow vehicle keeps its download stream open on the replica for most of
    the transfer (a 5 MB SqueezeNet is mostly in the agent's buffers at once).
    """
    n = megabytes * 1024 * 1024 // 4
    w = np.random.default_rng(seed).standard_normal(n, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "heavy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def update_each(configs: list) -> list[list[tuple[str, str]]]:
    """One update cycle of a real agent per configuration; (status, version) of each outcome."""
    from vehicle_agent.agent import VehicleAgent

    agents = [VehicleAgent(c) for c in configs]
    try:
        return [[(o.status, o.version) for o in a.update_once()] for a in agents]
    finally:
        for a in agents:
            a.close()


@dataclass
class History:
    targets: list[Metadata]
    snapshots: list[Metadata]
    timestamps: list[Metadata]


def _chain(store: MetadataStore, role: str, root: Metadata[Root]) -> list[Metadata]:
    """Every stored version of ``role``: 1, 2, … with no gap, each validly signed."""
    out: list[Metadata] = []
    while (data := store.get_tuf_metadata(role, len(out) + 1)) is not None:
        md = Metadata.from_bytes(data)
        assert md.signed.type == role and md.signed.version == len(out) + 1, (
            role,
            md.signed.version,
            len(out) + 1,
        )
        root.signed.verify_delegate(
            role, md.signed_bytes, md.signatures
        )  # raises when not signed by the role's keys
        out.append(md)
    latest = store.get_tuf_metadata(role)
    assert latest is not None and Metadata.from_bytes(latest).signed.version == len(out), (
        f"{role}: gap in history"
    )
    return out


def verify_tuf_history(store: MetadataStore) -> History:
    """Assert the stored metadata is one chain: contiguous versions, valid signatures,
    snapshots and timestamps that only move forward and point at versions that exist,
    and targets that only ever grow. Returns the chain for further checks."""
    root = Metadata[Root].from_bytes(store.get_tuf_metadata("root", 1))  # type: ignore[arg-type]
    targets, snapshots, timestamps = (
        _chain(store, r, root) for r in ("targets", "snapshot", "timestamp")
    )
    for older, newer in itertools.pairwise(targets):
        for path, tf in older.signed.targets.items():
            assert newer.signed.targets.get(path) == tf, (
                f"targets v{newer.signed.version} lost or changed {path}"
            )
    snap_targets = [s.signed.meta["targets.json"].version for s in snapshots]
    assert snap_targets == sorted(snap_targets) and set(snap_targets) <= set(
        range(1, len(targets) + 1)
    )
    ts_snaps = [t.signed.snapshot_meta.version for t in timestamps]
    assert ts_snaps == sorted(ts_snaps) and set(ts_snaps) <= set(range(1, len(snapshots) + 1))
    assert ts_snaps[-1] == len(snapshots) and snap_targets[-1] == len(targets), (
        "newest metadata is not linked"
    )
    return History(targets, snapshots, timestamps)
