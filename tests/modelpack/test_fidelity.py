"""The fidelity harness: a reproducible evaluation set and honest agreement figures."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from modelpack import deepcompression as dc
from modelpack.fidelity import PHOTOS, compare, evaluation_views, render
from modelpack.zoo.squeezenet import build_from_tensors


def test_evaluation_set_is_reproducible_and_varied() -> None:
    a, b, c = evaluation_views(300), evaluation_views(300), evaluation_views(300, seed=1)
    assert a == b and a != c and len(a) == 300
    assert {v.photo for v in a} == set(PHOTOS)
    assert any(v.flip for v in a) and any(not v.flip for v in a)
    assert {v.rescale for v in a} >= {1.0, 0.5}
    assert len({v.box for v in a}) > 250
    np.testing.assert_array_equal(np.asarray(render(a[7])), np.asarray(render(b[7])))


def test_reencoded_real_model_agrees_fully(squeezenet_bytes: bytes) -> None:
    # decode -> encode from plain tensors -> decode -> build: the same model, so 100% agreement.
    tensors = dc.decode_tensors(dc.parse(dc.encode_tensors(dc.load_shipped_tensors())))
    copy = build_from_tensors(tensors)
    report = compare(squeezenet_bytes, copy, n=30)
    assert report.n_inputs == 30
    assert report.top1_agreement == 1.0 and report.top5_agreement == 1.0
    assert report.max_abs_diff == 0.0


def test_a_changed_model_measures_below_full_agreement(squeezenet_bytes: bytes) -> None:
    model = onnx.load_model_from_string(squeezenet_bytes)
    w = next(t for t in model.graph.initializer if t.name == "conv10/weight")
    arr = onnx.numpy_helper.to_array(w).copy()
    arr += np.random.default_rng(0).normal(0, 0.05, arr.shape).astype(np.float32)
    w.CopyFrom(onnx.numpy_helper.from_array(arr, "conv10/weight"))
    report = compare(squeezenet_bytes, model.SerializeToString(), n=30)
    assert report.top1_agreement is not None and report.top1_agreement < 1.0
    assert report.max_abs_diff > 0.01 and 0 < report.mean_abs_diff < report.max_abs_diff


def test_detector_agrees_with_itself_and_not_with_a_classifier(
    squeezedet_bytes: bytes, squeezenet_bytes: bytes
) -> None:
    report = compare(squeezedet_bytes, squeezedet_bytes, n=2)
    assert report.kind == "detector" and report.box_agreement == 1.0 and report.n_reference_boxes
    with pytest.raises(ValueError, match="cannot compare"):
        compare(squeezedet_bytes, squeezenet_bytes, n=1)


def test_cli_fidelity_json(squeezenet_bytes: bytes, tmp_path) -> None:
    from modelpack.cli import fidelity

    ref = tmp_path / "ref.onnx"
    ref.write_bytes(squeezenet_bytes)
    res = CliRunner().invoke(fidelity, [str(ref), str(ref), "--n", "5", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["top1_agreement"] == 1.0 and got["n_inputs"] == 5
    res = CliRunner().invoke(fidelity, [str(ref), str(tmp_path / "none.onnx")])
    assert res.exit_code != 0 and "no such model file" in res.output
