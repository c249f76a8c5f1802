"""The zoo's other models: graphs, parameter counts, honesty labels, determinism."""

from __future__ import annotations

import numpy as np
import onnx

from modelpack import zoo
from modelpack.runtime import make_session, read_model_info
from modelpack.selftest import run_selftest
from modelpack.zoo.graph import param_count


def test_zoo_lists_its_models() -> None:
    assert {"squeezenet1.0", "squeezenet1.1", "squeezedet"} <= set(zoo.names())


def test_squeezenet11_graph_and_untrained_label(squeezenet11_bytes: bytes) -> None:
    model = onnx.load_model_from_string(squeezenet11_bytes)
    onnx.checker.check_model(model)
    assert param_count(model) == 1_235_496  # as torchvision's squeezenet1_1
    conv1 = next(t for t in model.graph.initializer if t.name == "conv1/weight")
    assert list(conv1.dims) == [64, 3, 3, 3]
    pools = [n.name for n in model.graph.node if n.op_type == "MaxPool"]
    assert pools == ["pool1", "pool3", "pool5"]
    info = read_model_info(model)
    assert info is not None and info.trained is False and "UNTRAINED" in info.provenance
    assert info.architecture == "squeezenet1.1"
    assert run_selftest(make_session(squeezenet11_bytes), info).ok
    assert zoo.build("squeezenet1.1") == squeezenet11_bytes


def test_squeezedet_graph_reuses_real_v10_fires(
    squeezedet_bytes: bytes, squeezenet_bytes: bytes
) -> None:
    det = onnx.load_model_from_string(squeezedet_bytes)
    ref = {t.name: t for t in onnx.load_model_from_string(squeezenet_bytes).graph.initializer}
    inits = {t.name: t for t in det.graph.initializer}
    for i in range(3, 10):
        name = f"fire{i}/expand3x3/weight"
        np.testing.assert_array_equal(
            onnx.numpy_helper.to_array(inits[name]), onnx.numpy_helper.to_array(ref[name])
        )
    assert list(inits["fire2/squeeze1x1/weight"].dims) == [16, 64, 1, 1]
    assert list(inits["fire11/expand3x3/weight"].dims) == [384, 96, 3, 3]
    assert list(inits["conv12/weight"].dims) == [72, 768, 3, 3]
    assert 1_900_000 < param_count(det) < 2_200_000
    info = read_model_info(det)
    assert info is not None and info.kind == "detector" and info.input_shape == (1, 3, 384, 1248)
    assert info.preprocessing.mean == (103.939, 116.779, 123.68)
    assert len(info.extra["anchor_shapes"]) == 9 and info.extra["grid"] == [24, 78]
    assert run_selftest(make_session(squeezedet_bytes), info).ok
    assert zoo.build("squeezedet") == squeezedet_bytes
