"""SqueezeDet for KITTI, as the paper's reference implementation builds it.

A SqueezeNet v1.1-style backbone (conv1 64 3x3/2, pools after conv1, fire3,
fire5), fire2..fire9, two extra fire modules fire10/fire11 (96 → 384+384) and
the ConvDet layer ``conv12`` (3x3, 9 anchors × (3 classes + 1 confidence + 4
deltas) = 72 channels) over a 24×78 grid for a 1248×384 input. The reference
is TensorFlow with SAME padding; at stride 2 on even sizes that pads one row
and column at the end, written here as explicit pads (0, 0, 1, 1).

fire3..fire9 have the shapes of SqueezeNet v1.0's and start from its real
ImageNet weights (how SqueezeDet is trained: from an ImageNet backbone);
conv1, fire2, fire10, fire11 and conv12 are seeded. The model is therefore
labelled untrained: its detections are not meaningful.
"""

from __future__ import annotations

from modelpack.deepcompression import LayerTensors
from modelpack.metadata import ModelInfo, Preprocessing
from modelpack.zoo.graph import GraphBuilder
from modelpack.zoo.seeded import he_conv, seeded_fire
from modelpack.zoo.squeezenet import finish, fire, shipped_tensor_dict

SEED = 7
HEIGHT, WIDTH = 384, 1248
GRID = (24, 78)
ANCHOR_SHAPES = (
    (36, 37),
    (366, 174),
    (115, 59),
    (162, 87),
    (38, 90),
    (258, 173),
    (224, 108),
    (78, 170),
    (72, 43),
)
CLASSES = ("car", "pedestrian", "cyclist")
SAME_S2 = (0, 0, 1, 1)
REAL_FIRES = (3, 4, 5, 6, 7, 8, 9)


def squeezedet_tensors(seed: int = SEED) -> list[LayerTensors]:
    real = shipped_tensor_dict()
    tensors = [he_conv(seed, "conv1", (64, 3, 3, 3))]
    tensors += seeded_fire(seed, 2, 64, 16, 64)
    for i in REAL_FIRES:
        tensors += [real[f"fire{i}/{part}"] for part in ("squeeze1x1", "expand1x1", "expand3x3")]
    tensors += seeded_fire(seed, 10, 512, 96, 384)
    tensors += seeded_fire(seed, 11, 768, 96, 384)
    n_out = len(ANCHOR_SHAPES) * (len(CLASSES) + 1 + 4)
    tensors.append(he_conv(seed, "conv12", (n_out, 768, 3, 3), std=0.01))
    return tensors


def squeezedet_info(seed: int = SEED) -> ModelInfo:
    return ModelInfo(
        kind="detector",
        architecture="squeezedet",
        input_name="data",
        input_shape=(1, 3, HEIGHT, WIDTH),
        output_names=("preds",),
        preprocessing=Preprocessing(
            height=HEIGHT, width=WIDTH, channel_order="BGR", mean=(103.939, 116.779, 123.68)
        ),
        labels="kitti",
        trained=False,
        provenance=(
            "PARTLY UNTRAINED: SqueezeDet graph (KITTI, reference implementation). fire3..fire9 hold the real "
            "SqueezeNet v1.0 ImageNet weights (Deep Compression release, decoded exactly); conv1, fire2, "
            f"fire10, fire11 and the ConvDet layer conv12 are seeded (numpy PCG64, seed {seed}). "
            "Never trained for detection: its boxes are not meaningful."
        ),
        extra={
            "seed": seed,
            "real_layers": [f"fire{i}" for i in REAL_FIRES],
            "grid": list(GRID),
            "anchor_shapes": [list(a) for a in ANCHOR_SHAPES],
            "classes": list(CLASSES),
            "output_layout": "NCHW; channels: anchors*classes class logits, anchors confidences (sigmoid), anchors*4 deltas",
            "exp_thresh": 1.0,
            "top_n": 64,
            "nms_iou": 0.4,
            "prob_thresh": 0.005,
            "plot_thresh": 0.4,
        },
    )


def build_squeezedet(seed: int = SEED) -> bytes:
    info = squeezedet_info(seed)
    w = {t.name: t for t in squeezedet_tensors(seed)}
    g = GraphBuilder()
    x = g.conv("conv1", info.input_name, w["conv1"].weight, w["conv1"].bias, stride=2, pads=SAME_S2)
    x = g.maxpool("pool1", x, ceil=False, pads=SAME_S2)
    x = fire(g, x, 2, w)
    x = fire(g, x, 3, w)
    x = g.maxpool("pool3", x, ceil=False, pads=SAME_S2)
    x = fire(g, x, 4, w)
    x = fire(g, x, 5, w)
    x = g.maxpool("pool5", x, ceil=False, pads=SAME_S2)
    for i in (6, 7, 8, 9, 10, 11):
        x = fire(g, x, i, w)
    # dropout11 is the identity at inference.
    g.conv("conv12", x, w["conv12"].weight, w["conv12"].bias, pad=1, relu=False, out="preds")
    model = g.model(
        info.architecture, info.input_name, info.input_shape, [("preds", (1, 72, *GRID))]
    )
    return finish(model, info)[0]
