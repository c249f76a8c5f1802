"""The SqueezeNet v1.0 lineage: reproducible successors with recorded provenance and fidelity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from modelpack import deepcompression as dc
from modelpack.lineage import FILES, LineageRecipe, build_lineage, read_manifest
from modelpack.quantize import kmeans_1d, requantize_codebooks
from modelpack.retrain import head_forward, train_head
from modelpack.runtime import make_session, read_model_info
from modelpack.selftest import run_selftest

# A smaller recipe than the default keeps the test fast; the code path is the same.
SMALL = LineageRecipe(fidelity_n=20, head_views=10, head_steps=4, int8_calibration=8)


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    mp = pytest.MonkeyPatch()
    mp.setenv("OTA_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield build_lineage(tmp_path_factory.mktemp("lineage"), recipe=SMALL)
    finally:
        mp.undo()


def test_lineage_files_and_manifest(lineage: dict[str, Path], squeezenet_bytes: bytes) -> None:
    assert {k: p.name for k, p in lineage.items() if k != "manifest"} == FILES
    assert lineage["base"].read_bytes() == squeezenet_bytes
    manifest = read_manifest(lineage["manifest"].parent)
    assert manifest["recipe"]["head_steps"] == 4
    for key, entry in manifest["members"].items():
        data = lineage[key].read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        if key != "base":
            assert entry["parent"] == "base"
            assert 0.0 <= entry["fidelity_vs_parent"]["top1_agreement"] <= 1.0
            assert entry["fidelity_vs_parent"]["n_inputs"] == 20


def test_each_member_records_how_it_was_made_and_passes_its_selftest(
    lineage: dict[str, Path],
) -> None:
    methods = {"head": "head-retrain", "int8": "int8-static-qdq", "cb6": "codebook-6bit"}
    for key, method in methods.items():
        data = lineage[key].read_bytes()
        info = read_model_info(data)
        assert info is not None and info.extra["lineage"]["method"] == method
        assert info.extra["fidelity"]["kind"] == "classifier"
        assert info.provenance and "SqueezeNet v1.0" in info.provenance
        assert run_selftest(make_session(data), info).ok


def test_members_differ_from_the_base_where_they_should(lineage: dict[str, Path]) -> None:
    base = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in onnx.load_model(lineage["base"]).graph.initializer
    }
    head = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in onnx.load_model(lineage["head"]).graph.initializer
    }
    for name in base:
        if name.startswith("conv10"):
            assert not np.array_equal(base[name], head[name])
        else:
            np.testing.assert_array_equal(base[name], head[name])
    # The pruning mask of conv10 is kept.
    np.testing.assert_array_equal(base["conv10/weight"] == 0, head["conv10/weight"] == 0)
    cb6 = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in onnx.load_model(lineage["cb6"]).graph.initializer
    }
    for name, w in cb6.items():
        if name.endswith("/weight"):
            assert np.unique(w).size <= 64
            np.testing.assert_array_equal(w == 0, base[name] == 0)
    int8 = onnx.load_model(lineage["int8"])
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    assert lineage["int8"].stat().st_size < lineage["base"].stat().st_size / 3


def test_lineage_is_cached_and_reproducible(
    lineage: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = build_lineage(None, recipe=SMALL)  # the module's cache: nothing rebuilt
    stamps = {k: cached[k].stat().st_mtime_ns for k in FILES}
    assert build_lineage(None, recipe=SMALL) == cached
    assert {k: cached[k].stat().st_mtime_ns for k in FILES} == stamps
    monkeypatch.setenv(
        "OTA_CACHE", str(tmp_path / "fresh")
    )  # an empty cache: built again from scratch
    again = build_lineage(tmp_path / "copy", recipe=SMALL)
    for key in FILES:
        assert again[key].read_bytes() == lineage[key].read_bytes()


def test_head_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    f = np.maximum(rng.normal(size=(3, 4, 2, 2)), 0).astype(np.float32)
    w0 = rng.normal(size=(5, 4, 1, 1)).astype(np.float32)
    b0 = rng.normal(size=5).astype(np.float32)
    targets = np.array([0, 3, 1])

    def loss(w: np.ndarray, b: np.ndarray) -> float:
        s, _ = head_forward(
            w.reshape(5, 4).astype(np.float64), b.astype(np.float64), f.astype(np.float64)
        )
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(3), targets].mean())

    lr = 1e-3
    w1, _b1, losses = train_head(w0, b0, f, targets, steps=1, lr=lr, momentum=0.0)
    grad_w = (w0 - w1) / lr
    eps = 1e-3
    for idx in [(0, 0, 0, 0), (3, 2, 0, 0), (4, 1, 0, 0)]:
        wp, wm = w0.astype(np.float64).copy(), w0.astype(np.float64).copy()
        wp[idx] += eps
        wm[idx] -= eps
        numeric = (loss(wp, b0) - loss(wm, b0)) / (2 * eps)
        assert grad_w[idx] == pytest.approx(numeric, rel=2e-2, abs=1e-4)
    assert losses[0] == pytest.approx(loss(w0, b0), rel=1e-5)


def test_kmeans_and_codebook_requantization() -> None:
    cent = kmeans_1d(np.array([0.0, 1.0, 10.0, 11.0]), np.ones(4), 2)
    assert cent.tolist() == pytest.approx([0.5, 10.5])
    layers = dc.load_shipped()[:2]
    for t, layer in zip(requantize_codebooks(layers, 4), layers, strict=False):
        assert np.unique(t.weight[t.weight != 0]).size <= 15
        np.testing.assert_array_equal(t.weight == 0, layer.weights() == 0)
        np.testing.assert_array_equal(t.bias, layer.bias)


def test_cli_lineage(
    lineage: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelpack.lineage as lin
    from modelpack.cli import zoo

    # Serve the module's small lineage from its cache rather than building the default recipe.
    monkeypatch.setattr(lin, "LineageRecipe", lambda: SMALL)
    res = CliRunner().invoke(zoo, ["lineage", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    for name in FILES.values():
        assert (tmp_path / "out" / name).is_file()
    assert "int8" in res.output and "%" in res.output
    assert json.loads((tmp_path / "out" / "lineage.json").read_text())["recipe"]["fidelity_n"] == 20


def test_full_finetune_with_torch_moves_every_layer(squeezenet_bytes: bytes) -> None:
    # PyTorch is the optional bench extra; without it this test reports itself skipped.
    pytest.importorskip("torch", reason="full fine-tune needs the bench extra (torch==2.13.0)")
    import dataclasses

    from modelpack.lineage import _Builder

    recipe = dataclasses.replace(SMALL, finetune=True, finetune_views=5, finetune_steps=2)
    data, report = _Builder(
        recipe
    ).finetune()  # the lineage's own member builder, without the other members
    info = read_model_info(data)
    assert info is not None and info.extra["lineage"]["method"] == "full-finetune-torch"
    assert info.extra["lineage"]["loss_last"] < info.extra["lineage"]["loss_first"]
    assert info.extra["fidelity"] == report.to_dict() and report.n_inputs == 20
    assert run_selftest(make_session(data), info).ok
    base = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in onnx.load_model_from_string(squeezenet_bytes).graph.initializer
    }
    tuned = {
        t.name: onnx.numpy_helper.to_array(t)
        for t in onnx.load_model_from_string(data).graph.initializer
    }
    changed = [n for n in base if n.endswith("/weight") and not np.array_equal(base[n], tuned[n])]
    assert len(changed) == 26
    np.testing.assert_array_equal(base["conv1/weight"] == 0, tuned["conv1/weight"] == 0)


def test_demo_successor_is_the_head_retrain(
    lineage: dict[str, Path], squeezenet_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelpack.lineage as lin

    monkeypatch.setattr(lin, "LineageRecipe", lambda: SMALL)  # the module's cached small lineage
    data, how = lin.demo_successor(squeezenet_bytes)
    assert data == lineage["head"].read_bytes()
    assert "gradient descent" in how and "agreement" in how
    with pytest.raises(ValueError, match="SqueezeNet v1.0"):
        lin.demo_successor(b"other" + squeezenet_bytes)
