"""AlexNet as in the BVLC Caffe release (groups of 2, LRN), with seeded
weights: only the size and speed baseline the paper compares against
(60,965,224 parameters, ~244 MB as float32). Built on demand into the cache
(``modelpack.cache``), never committed."""

from __future__ import annotations

import numpy as np

from modelpack.metadata import ModelInfo, Preprocessing
from modelpack.zoo.graph import GraphBuilder
from modelpack.zoo.seeded import he_conv, layer_rng
from modelpack.zoo.squeezenet import finish

SEED = 2012

# name, (out, in/group, k, k), stride, pad, group
CONVS = (
    ("conv1", (96, 3, 11, 11), 4, 0, 1),
    ("conv2", (256, 48, 5, 5), 1, 2, 2),
    ("conv3", (384, 256, 3, 3), 1, 1, 1),
    ("conv4", (384, 192, 3, 3), 1, 1, 2),
    ("conv5", (256, 192, 3, 3), 1, 1, 2),
)
FCS = (("fc6", 4096, 256 * 6 * 6), ("fc7", 4096, 4096), ("fc8", 1000, 4096))


def alexnet_info(seed: int = SEED) -> ModelInfo:
    return ModelInfo(
        kind="classifier",
        architecture="alexnet",
        input_shape=(1, 3, 227, 227),
        preprocessing=Preprocessing(
            height=227, width=227, channel_order="BGR", mean=(104.0, 117.0, 123.0)
        ),
        labels="imagenet",
        trained=False,
        provenance=(
            f"UNTRAINED: BVLC AlexNet graph with seeded weights (numpy PCG64, seed {seed}), "
            "the paper's size/speed baseline only. Its answers are meaningless."
        ),
        extra={"seed": seed},
    )


def _fc(seed: int, name: str, out_f: int, in_f: int) -> tuple[np.ndarray, np.ndarray]:
    w = layer_rng(seed, name).standard_normal(size=(out_f, in_f), dtype=np.float32)
    w *= np.float32(np.sqrt(2.0 / in_f) if name != "fc8" else 0.01)
    return w, np.zeros(out_f, dtype=np.float32)


def build_alexnet(seed: int = SEED) -> bytes:
    info = alexnet_info(seed)
    g = GraphBuilder()
    x = info.input_name
    for name, shape, stride, pad, group in CONVS:
        t = he_conv(seed, name, shape)
        x = g.conv(name, x, t.weight, t.bias, stride=stride, pad=pad, group=group)
        if name in ("conv1", "conv2"):
            x = g.op("LRN", f"norm{name[-1]}", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)
        if name in ("conv1", "conv2", "conv5"):
            x = g.maxpool(f"pool{name[-1]}", x, ceil=True)
    x = g.op("Flatten", "flatten", [x], axis=1)
    for name, out_f, in_f in FCS:
        w, b = _fc(seed, name, out_f, in_f)
        x = g.op(
            "Gemm",
            name,
            [x, g.add_initializer(f"{name}/weight", w), g.add_initializer(f"{name}/bias", b)],
            transB=1,
        )
        if name != "fc8":
            x = g.relu(f"{name}/relu", x)
        # dropout after fc6/fc7 is the identity at inference
    g.op("Softmax", "prob", [x], axis=1)
    model = g.model(info.architecture, info.input_name, info.input_shape, [("prob", (1, 1000))])
    return finish(model, info)[0]
