"""Small ONNX models with chosen initializers, for codec tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model_bytes(tensors: dict[str, np.ndarray], doc: str = "") -> bytes:
    """A valid ONNX model whose initializers are ``tensors`` (graph: identity)."""
    inits = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        inits,
    )
    model = helper.make_model(graph, doc_string=doc)
    return model.SerializeToString()


def codebook_tensor(
    rng: np.random.Generator, shape: tuple[int, ...], k: int = 64, sparsity: float = 0.6
) -> np.ndarray:
    """Deep-Compression-like: at most ``k`` distinct values, many zeros."""
    book = rng.normal(0, 0.05, size=k).astype(np.float32)
    w = book[rng.integers(0, k, size=shape)]
    w[rng.random(shape) < sparsity] = 0.0
    return w.astype(np.float32)
