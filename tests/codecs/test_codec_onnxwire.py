from __future__ import annotations

import numpy as np
import onnx
import pytest

from modelpack.codecs.onnxwire import NotOnnxError, find_tensors, split
from tests.codecs.codectest_models import model_bytes


def test_finds_every_initializer_data_range_exactly() -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.integers(-128, 127, size=10).astype(np.int8),
        "c": rng.normal(size=5).astype(np.float64),
    }
    data = model_bytes(tensors)
    slots = find_tensors(data)
    assert [s.name for s in slots] == ["a", "b", "c"]
    for s in slots:
        assert data[s.offset : s.end] == tensors[s.name].tobytes()
        assert s.dims == tensors[s.name].shape
        assert s.elem_size == tensors[s.name].itemsize
    skeleton = split(data, slots)
    assert len(skeleton) == len(data) - sum(s.length for s in slots)


def test_float_data_field_is_found_too() -> None:
    t = onnx.helper.make_tensor(
        "f", onnx.TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]
    )  # float_data, not raw
    g = onnx.helper.make_graph([], "g", [], [], [t])
    data = onnx.helper.make_model(g).SerializeToString()
    (slot,) = find_tensors(data)
    assert np.frombuffer(data[slot.offset : slot.end], "<f4").tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "junk", [b"", b"\x00\x01\x02", b"hello world, not protobuf", bytes(range(256))]
)
def test_non_onnx_bytes_are_refused(junk: bytes) -> None:
    with pytest.raises(NotOnnxError):
        find_tensors(junk)
