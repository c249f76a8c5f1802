"""SqueezeNet v1.0 as the original Caffe network ran it, from the real
Deep Compression weights (exact float32 values; see ``deepcompression``)."""

from __future__ import annotations

import onnx

from modelpack import deepcompression as dc
from modelpack.metadata import ModelInfo, Preprocessing
from modelpack.runtime import set_model_info
from modelpack.selftest import with_selftest
from modelpack.zoo.graph import GraphBuilder, serialize

V10_PROVENANCE = (
    "Real trained SqueezeNet v1.0 ImageNet weights (Iandola et al. 2016) as released after "
    "Deep Compression (pruned, 8-bit weight sharing; github.com/songhan/SqueezeNet-Deep-Compression, "
    f"BSD), decoded exactly to float32 from squeezenet_v1.0_deep_compression.net "
    f"(sha256 {dc.SHIPPED_SHA256}). Graph as the Caffe release: ceil-mode pooling, conv10 pad 1."
)


def fire(g: GraphBuilder, x: str, idx: int, w: dict[str, dc.LayerTensors]) -> str:
    """Squeeze 1x1 → ReLU → (expand 1x1 ‖ expand 3x3 pad 1) → ReLU → concat."""
    p = f"fire{idx}"
    s = g.conv(f"{p}/squeeze1x1", x, w[f"{p}/squeeze1x1"].weight, w[f"{p}/squeeze1x1"].bias)
    e1 = g.conv(f"{p}/expand1x1", s, w[f"{p}/expand1x1"].weight, w[f"{p}/expand1x1"].bias)
    e3 = g.conv(f"{p}/expand3x3", s, w[f"{p}/expand3x3"].weight, w[f"{p}/expand3x3"].bias, pad=1)
    return g.concat(f"{p}/concat", [e1, e3])


def classifier_tail(g: GraphBuilder, x: str, conv10: dc.LayerTensors, pad: int) -> str:
    """conv10 → ReLU → global average pool → flatten → softmax, output "prob"."""
    c = g.conv("conv10", x, conv10.weight, conv10.bias, pad=pad)
    gap = g.op("GlobalAveragePool", "pool10", [c])
    flat = g.op("Flatten", "flatten", [gap], axis=1)
    return g.op("Softmax", "prob", [flat], axis=1)


def squeezenet_v10_graph(tensors: list[dc.LayerTensors], info: ModelInfo) -> onnx.ModelProto:
    w = {t.name: t for t in tensors}
    g = GraphBuilder()
    x = g.conv("conv1", info.input_name, w["conv1"].weight, w["conv1"].bias, stride=2)
    x = g.maxpool("pool1", x)
    for i in (2, 3, 4):
        x = fire(g, x, i, w)
    x = g.maxpool("pool4", x)
    for i in (5, 6, 7, 8):
        x = fire(g, x, i, w)
    x = g.maxpool("pool8", x)
    x = fire(g, x, 9, w)
    # Dropout is the identity at inference, so it is not in the graph.
    classifier_tail(g, x, w["conv10"], pad=1)
    return g.model(info.architecture, info.input_name, info.input_shape, [("prob", (1, 1000))])


def v10_info() -> ModelInfo:
    return ModelInfo(
        kind="classifier",
        architecture="squeezenet1.0",
        input_name="data",
        input_shape=(1, 3, 227, 227),
        output_names=("prob",),
        preprocessing=Preprocessing(
            height=227, width=227, channel_order="BGR", mean=(104.0, 117.0, 123.0)
        ),
        labels="imagenet",
        trained=True,
        provenance=V10_PROVENANCE,
    )


def finish(model: onnx.ModelProto, info: ModelInfo, *, seed: int = 0) -> tuple[bytes, ModelInfo]:
    """Embed ``info`` with a self-test computed on the model itself."""
    info = with_selftest(serialize(model), info, seed=seed)
    set_model_info(model, info)
    return serialize(model), info


def build_from_tensors(tensors: list[dc.LayerTensors], info: ModelInfo | None = None) -> bytes:
    """An ONNX SqueezeNet v1.0 from any weights of the right shapes."""
    info = info or v10_info()
    return finish(squeezenet_v10_graph(tensors, info), info)[0]


def build_squeezenet_v10() -> bytes:
    return build_from_tensors(dc.load_shipped_tensors())


def shipped_tensor_dict() -> dict[str, dc.LayerTensors]:
    return {t.name: t for t in dc.load_shipped_tensors()}
