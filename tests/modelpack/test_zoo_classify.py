"""SqueezeNet v1.0 built from the real weights: determinism, metadata, real answers."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from modelpack import zoo
from modelpack.classify import Classifier, classify
from modelpack.imaging import IMAGES_DIR
from modelpack.metadata import ModelInfo
from modelpack.runtime import NotAnOnnxModel, make_session, read_model_info
from modelpack.selftest import run_selftest, selftest_input


def test_build_is_deterministic(squeezenet_bytes: bytes) -> None:
    assert zoo.build("squeezenet1.0") == squeezenet_bytes


def test_model_is_valid_onnx_with_caffe_details(squeezenet_bytes: bytes) -> None:
    model = onnx.load_model_from_string(squeezenet_bytes)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == ["prob"]
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3
    assert all(
        onnx.helper.get_attribute_value(a) == 1
        for n in pools
        for a in n.attribute
        if a.name == "ceil_mode"
    )
    conv10 = next(n for n in model.graph.node if n.name == "conv10")
    assert [onnx.helper.get_attribute_value(a) for a in conv10.attribute if a.name == "pads"] == [
        [1, 1, 1, 1]
    ]
    n_weights = sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if t.name.endswith("/weight")
    )
    assert n_weights == 1_244_448
    assert 4_900_000 < len(squeezenet_bytes) < 5_100_000


def test_model_info_is_embedded(squeezenet_bytes: bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    assert isinstance(info, ModelInfo)
    assert info.kind == "classifier" and info.architecture == "squeezenet1.0"
    assert info.trained is True
    assert info.preprocessing.channel_order == "BGR" and info.preprocessing.mean == (
        104.0,
        117.0,
        123.0,
    )
    assert info.input_shape == (1, 3, 227, 227)
    assert "Deep Compression" in info.provenance
    assert info.selftest is not None and len(info.selftest.expected) == 16


def test_selftest_passes_on_the_model_and_fails_on_another(squeezenet_bytes: bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    assert info is not None
    session = make_session(squeezenet_bytes)
    assert run_selftest(session, info).ok
    # The same graph with conv10's bias shifted is a different model: the self-test must notice.
    model = onnx.load_model_from_string(squeezenet_bytes)
    bias = next(t for t in model.graph.initializer if t.name == "conv10/bias")
    arr = onnx.numpy_helper.to_array(bias).copy()
    arr[:10] += 0.5
    bias.CopyFrom(onnx.numpy_helper.from_array(arr, "conv10/bias"))
    result = run_selftest(make_session(model.SerializeToString()), info)
    assert not result.ok and "differs" in result.reason


def test_selftest_input_is_seeded_and_preprocessed(squeezenet_bytes: bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    assert info is not None
    a, b, c = selftest_input(info, 0), selftest_input(info, 0), selftest_input(info, 1)
    assert a.shape == (1, 3, 227, 227) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Channel 0 is B with mean 104 removed: uniform 0..255 minus 104.
    assert -104.5 < a[0, 0].min() < -100 and 145 < a[0, 0].max() < 151.5


def test_chelsea_is_an_egyptian_cat(squeezenet_bytes: bytes) -> None:
    preds = classify(squeezenet_bytes, IMAGES_DIR / "chelsea.png", 3)
    assert (preds[0].class_id, preds[0].label) == (285, "Egyptian cat")
    assert {p.class_id for p in preds} == {285, 282, 281}  # tiger cat, tabby


def test_coffee_is_espresso(squeezenet_bytes: bytes) -> None:
    top = Classifier(squeezenet_bytes).classify(IMAGES_DIR / "coffee.png", 5)[0]
    assert (top.class_id, top.label) == (967, "espresso")
    assert top.prob > 0.9


def test_non_onnx_input_is_refused_clearly(tmp_path) -> None:
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(NotAnOnnxModel, match="not an ONNX model"):
        Classifier(bad)


def test_cli_build_and_classify(tmp_path) -> None:
    from modelpack.cli import classify as classify_cmd
    from modelpack.cli import zoo as zoo_cmd

    out = tmp_path / "sq.onnx"
    runner = CliRunner()
    res = runner.invoke(zoo_cmd, ["build", "squeezenet1.0", "-o", str(out)])
    assert res.exit_code == 0, res.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in res.output and f"{out.stat().st_size:,}" in res.output
    res = runner.invoke(classify_cmd, [str(out), str(IMAGES_DIR / "coffee.png"), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "967" in res.output and "espresso" in res.output
    assert res.output.count("\n") < 15


def test_cli_classify_errors(tmp_path) -> None:
    from modelpack.cli import classify as classify_cmd

    runner = CliRunner()
    res = runner.invoke(
        classify_cmd, [str(tmp_path / "missing.onnx"), str(IMAGES_DIR / "coffee.png")]
    )
    assert res.exit_code != 0 and "no such model file" in res.output
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 100)
    res = runner.invoke(classify_cmd, [str(junk), str(IMAGES_DIR / "coffee.png")])
    assert res.exit_code != 0 and "not an ONNX model" in res.output
    assert "Traceback" not in res.output


def test_ota_entry_point_wires_the_commands() -> None:
    from ota.cli import cli

    res = CliRunner().invoke(cli, ["zoo", "list"])
    assert res.exit_code == 0 and "squeezenet1.0" in res.output
