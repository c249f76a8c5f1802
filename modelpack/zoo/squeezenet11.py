"""SqueezeNet v1.1: 64 3x3 filters at stride 2 in conv1 and pooling after
conv1, fire3 and fire5 (2.4x less computation than v1.0, same accuracy per the
authors). No trained v1.1 weights are available here, so the weights are
seeded and the model says "untrained" in its metadata."""

from __future__ import annotations

from modelpack.deepcompression import FIRE_SIZES, LayerTensors
from modelpack.metadata import ModelInfo, Preprocessing
from modelpack.zoo.graph import GraphBuilder
from modelpack.zoo.seeded import he_conv, seeded_fire
from modelpack.zoo.squeezenet import classifier_tail, finish, fire

SEED = 11


def v11_tensors(seed: int = SEED) -> list[LayerTensors]:
    tensors = [he_conv(seed, "conv1", (64, 3, 3, 3))]
    in_ch = 64
    for i, (sq, ex) in FIRE_SIZES.items():
        tensors += seeded_fire(seed, i, in_ch, sq, ex)
        in_ch = 2 * ex
    # A small std for the classifier keeps the untrained softmax near uniform, as in training init.
    tensors.append(he_conv(seed, "conv10", (1000, in_ch, 1, 1), std=0.01))
    return tensors


def v11_info(seed: int = SEED) -> ModelInfo:
    return ModelInfo(
        kind="classifier",
        architecture="squeezenet1.1",
        input_shape=(1, 3, 227, 227),
        preprocessing=Preprocessing(
            height=227, width=227, channel_order="BGR", mean=(104.0, 117.0, 123.0)
        ),
        labels="imagenet",
        trained=False,
        provenance=(
            f"UNTRAINED: SqueezeNet v1.1 graph with seeded He-normal weights (numpy PCG64, seed {seed}); "
            "no trained v1.1 weights are available here. Its answers are meaningless."
        ),
        extra={"seed": seed},
    )


def build_squeezenet_v11(seed: int = SEED) -> bytes:
    info = v11_info(seed)
    w = {t.name: t for t in v11_tensors(seed)}
    g = GraphBuilder()
    x = g.conv("conv1", info.input_name, w["conv1"].weight, w["conv1"].bias, stride=2)
    x = g.maxpool("pool1", x)
    x = fire(g, x, 2, w)
    x = fire(g, x, 3, w)
    x = g.maxpool("pool3", x)
    x = fire(g, x, 4, w)
    x = fire(g, x, 5, w)
    x = g.maxpool("pool5", x)
    for i in (6, 7, 8, 9):
        x = fire(g, x, i, w)
    classifier_tail(g, x, w["conv10"], pad=0)
    model = g.model(info.architecture, info.input_name, info.input_shape, [("prob", (1, 1000))])
    return finish(model, info)[0]
