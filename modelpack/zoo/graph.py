"""A small builder for the zoo's convolutional ONNX graphs.

The zoo's networks are plain chains of Conv / ReLU / MaxPool / Concat, so a
thin helper over ``onnx.helper`` keeps each architecture file to its facts.
Serialisation is deterministic: node and initializer order follow the calls,
names are fixed, and nothing time- or host-dependent goes into the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # supported by every onnxruntime since 1.13
IR_VERSION = 8  # the IR that opset 17 shipped with; accepted by old and new runtimes
PRODUCER = "squeeze-ota modelpack"


@dataclass
class GraphBuilder:
    """Accumulates nodes and initializers; ``conv`` and friends return the
    name of their output so calls chain naturally."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)

    def add_initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(
            numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        )
        return name

    def conv(
        self,
        name: str,
        x: str,
        weight: np.ndarray,
        bias: np.ndarray,
        *,
        stride: int = 1,
        pad: int = 0,
        pads: tuple[int, int, int, int] | None = None,
        relu: bool = True,
        out: str | None = None,
        group: int = 1,
    ) -> str:
        """``pads`` (top, left, bottom, right) overrides the symmetric ``pad``,
        e.g. (0, 0, 1, 1) for TensorFlow's SAME padding at stride 2."""
        w = self.add_initializer(f"{name}/weight", weight)
        b = self.add_initializer(f"{name}/bias", bias)
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        out = out or name
        group_attr: dict[str, Any] = {"group": group} if group != 1 else {}
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [out],
                name=name,
                kernel_shape=[kh, kw],
                strides=[stride, stride],
                pads=list(pads) if pads is not None else [pad, pad, pad, pad],
                **group_attr,
            )
        )
        if relu:
            return self.relu(f"{name}/relu", out)
        return out

    def relu(self, name: str, x: str) -> str:
        self.nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    def maxpool(
        self,
        name: str,
        x: str,
        *,
        kernel: int = 3,
        stride: int = 2,
        ceil: bool = True,
        pads: tuple[int, int, int, int] | None = None,
    ) -> str:
        attrs: dict[str, Any] = {
            "kernel_shape": [kernel, kernel],
            "strides": [stride, stride],
            "ceil_mode": 1 if ceil else 0,
        }
        if pads is not None:
            attrs["pads"] = list(pads)
        self.nodes.append(helper.make_node("MaxPool", [x], [name], name=name, **attrs))
        return name

    def concat(self, name: str, xs: list[str]) -> str:
        self.nodes.append(helper.make_node("Concat", xs, [name], name=name, axis=1))
        return name

    def op(self, op_type: str, name: str, inputs: list[str], **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def model(
        self,
        graph_name: str,
        input_name: str,
        input_shape: tuple[int, ...],
        outputs: list[tuple[str, tuple[int, ...]]],
        metadata: dict[str, str] | None = None,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            producer_version="1",
        )
        model.ir_version = IR_VERSION
        if metadata:
            helper.set_model_props(model, metadata)
        return model


def param_count(model: onnx.ModelProto) -> int:
    """Number of float parameters in the model's initializers."""
    return int(sum(np.prod(t.dims) for t in model.graph.initializer))


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic bytes of a model (protobuf's deterministic mode)."""
    return model.SerializeToString(deterministic=True)
