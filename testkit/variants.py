"""Model versions for agent tests and benchmarks, derived from real SqueezeNet bytes.

``successor`` changes only the package metadata (new bytes, same answers).
``nan_on_dark_frames`` is the failure a health window exists for: it passes
its signed self-test (the golden input is bright on average) but returns NaN
for a dark frame, as a model that breaks at night would.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from testkit.helpers import with_provenance


def successor(base: bytes, n: int) -> bytes:
    return with_provenance(base, f"successor {n}")


def nan_on_dark_frames(base: bytes) -> bytes:
    """prob + 0·log(mean(input)): identical where the input's mean is positive, NaN where it is not."""
    model = onnx.load_model_from_string(with_provenance(base, "breaks on dark frames"))
    graph = model.graph
    out = graph.output[0].name
    last = next(node for node in graph.node if out in node.output)
    last.output[list(last.output).index(out)] = "prob_raw"
    graph.initializer.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    graph.node.extend(
        [
            helper.make_node("ReduceMean", [graph.input[0].name], ["input_mean"], keepdims=0),
            helper.make_node("Log", ["input_mean"], ["log_mean"]),
            helper.make_node("Mul", ["log_mean", "zero"], ["nan_or_zero"]),
            helper.make_node("Add", ["prob_raw", "nan_or_zero"], [out]),
        ]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)
