"""SqueezeDet post-processing against hand-computed cases, and the full path on KITTI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from modelpack import detection as det
from modelpack.imaging import IMAGES_DIR

CFG = det.DetectorConfig(
    image_height=30,
    image_width=40,
    grid=(2, 3),
    anchor_shapes=((4.0, 6.0), (8.0, 2.0)),
    classes=("car", "pedestrian", "cyclist"),
    top_n=64,
    nms_iou=0.4,
    prob_thresh=0.005,
)


def test_anchor_grid_order_and_centres() -> None:
    a = det.anchors(CFG)
    assert a.shape == (2 * 3 * 2, 4)
    # centres x = i*40/4 (10, 20, 30), y = j*30/3 (10, 20); cell-major, anchor-minor
    assert a[0].tolist() == [10, 10, 4, 6]
    assert a[1].tolist() == [10, 10, 8, 2]
    assert a[2].tolist() == [20, 10, 4, 6]
    assert a[5].tolist() == [30, 10, 8, 2]
    assert a[6].tolist() == [10, 20, 4, 6]


def test_kitti_anchor_count() -> None:
    from modelpack.zoo.squeezedet import ANCHOR_SHAPES, CLASSES

    cfg = det.DetectorConfig(384, 1248, (24, 78), ANCHOR_SHAPES, CLASSES)  # type: ignore[arg-type]
    a = det.anchors(cfg)
    assert a.shape == (16_848, 4)
    assert a[0, 0] == pytest.approx(1248 / 79) and a[0, 1] == pytest.approx(384 / 25)
    assert a[-1, :2] == pytest.approx([78 * 1248 / 79, 24 * 384 / 25])


def test_safe_exp_is_linear_above_threshold() -> None:
    e = math.e
    got = det.safe_exp(np.array([-1.0, 0.0, 1.0, 2.0, 3.0]), 1.0)
    assert got == pytest.approx([1 / e, 1.0, e, 2 * e, 3 * e])
    assert np.isfinite(det.safe_exp(np.array([1e6]), 1.0)).all()


def test_decode_deltas_hand_computed() -> None:
    cfg = det.DetectorConfig(200, 300, (1, 1), ((20.0, 10.0),), ("car",))
    anchors = np.array(
        [[100.0, 50.0, 20.0, 10.0], [100.0, 50.0, 20.0, 10.0], [5.0, 5.0, 20.0, 20.0]]
    )
    deltas = np.array([[0.5, -1.0, 0.0, math.log(2.0)], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    boxes = det.decode_boxes(anchors, deltas, cfg)
    # cx = 100 + 0.5*20, cy = 50 - 10, w = 20, h = 10*2
    assert boxes[0] == pytest.approx([100, 30, 120, 50])
    # dw = 2 is past the threshold: w = 20 * e * (2 - 1 + 1) = 40e
    half = 20 * math.e
    assert boxes[1] == pytest.approx([100 - half, 45, 100 + half, 55])
    # clipped to the image
    assert boxes[2] == pytest.approx([0, 0, 15, 15])


def test_iou_hand_computed() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]], dtype=float)
    assert det.iou(a, others) == pytest.approx([1 / 3, 1.0, 0.0, 0.25])


def test_nms_hand_computed() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # B overlaps A by 90/110 > 0.4: dropped; C overlaps A by 1/3: kept; D alone: kept.
    assert det.nms(boxes, scores, 0.4) == [0, 2, 3]
    # At a looser threshold B survives.
    assert det.nms(boxes, scores, 0.85) == [0, 1, 2, 3]
    # Order follows the scores, not the input order.
    assert det.nms(boxes[::-1].copy(), scores, 0.4) == [0, 1, 3]


def _preds(cells: list[list[float]]) -> np.ndarray:
    """One anchor per cell, 3 classes: channels [l0, l1, l2, conf, dx, dy, dw, dh]."""
    arr = np.array(cells, dtype=np.float32).T  # channels, W
    return arr[None, :, None, :]  # 1, channels, 1, W


def test_split_output_layout_softmax_sigmoid() -> None:
    cfg = det.DetectorConfig(10, 20, (1, 2), ((4.0, 4.0),), ("car", "pedestrian", "cyclist"))
    preds = _preds([[0, 0, 0, 0, 0, 0, 0, 0], [math.log(2), 0, 0, 2.0, 0.1, 0.2, 0.3, 0.4]])
    probs, conf, deltas = det.split_output(preds, cfg)
    assert probs[0] == pytest.approx([1 / 3] * 3)
    assert probs[1] == pytest.approx([0.5, 0.25, 0.25])
    assert conf == pytest.approx([0.5, 1 / (1 + math.exp(-2))])
    assert deltas[1] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="shape"):
        det.split_output(preds[:, :7], cfg)


def test_filter_is_per_class_with_top_n_and_threshold() -> None:
    cfg = det.DetectorConfig(
        100,
        100,
        (1, 1),
        ((10.0, 10.0),),
        ("car", "pedestrian"),
        top_n=3,
        nms_iou=0.4,
        prob_thresh=0.1,
    )
    boxes = np.array(
        [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [70, 70, 80, 80]],
        dtype=float,
    )
    # classes: car, car, pedestrian, car, car; scores .9 .8 .7 .05 .6
    probs = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [1, 0]], dtype=float)
    conf = np.array([0.9, 0.8, 0.7, 0.05, 0.6])
    dets = det.filter_detections(boxes, probs, conf, cfg)
    # top 3 by score: .9 car, .8 car, .7 pedestrian; .6 falls outside top-N.
    # Car NMS drops .8 (IoU .82 with .9); the pedestrian box equal to the car box stays (other class).
    assert [(d.label, round(d.score, 3)) for d in dets] == [("car", 0.9), ("pedestrian", 0.7)]
    cfg2 = det.DetectorConfig(
        100, 100, (1, 1), ((10.0, 10.0),), ("car", "pedestrian"), top_n=64, prob_thresh=0.1
    )
    dets2 = det.filter_detections(boxes, probs, conf, cfg2)
    assert [round(d.score, 3) for d in dets2] == [0.9, 0.7, 0.6]  # .05 under the threshold


def test_squeezedet_full_path_on_kitti(squeezedet_bytes: bytes, tmp_path) -> None:
    from modelpack.detect import Detector, draw
    from modelpack.runtime import read_model_info

    info = read_model_info(squeezedet_bytes)
    assert info is not None and info.kind == "detector" and info.trained is False
    assert "UNTRAINED" in info.provenance
    d = Detector(squeezedet_bytes)
    assert d.raw(np.zeros((1, 3, 384, 1248), dtype=np.float32)).shape == (1, 72, 24, 78)
    image = Image.open(IMAGES_DIR / "kitti_road.png").convert("RGB")
    dets = d.detect(image)
    assert 0 < len(dets) <= 64
    for x in dets:
        assert (
            0 <= x.box[0] <= x.box[2] <= image.width and 0 <= x.box[1] <= x.box[3] <= image.height
        )
        assert x.label in ("car", "pedestrian", "cyclist") and 0.005 < x.score <= 1
    drawn = draw(image, dets, threshold=0.0)
    assert drawn.size == image.size
    assert np.any(np.asarray(drawn) != np.asarray(image))


def test_cli_detect_draws_boxes(squeezedet_bytes: bytes, tmp_path) -> None:
    from modelpack.cli import detect

    model = tmp_path / "sqdet.onnx"
    model.write_bytes(squeezedet_bytes)
    out = tmp_path / "boxes.png"
    res = CliRunner().invoke(
        detect,
        [str(model), str(IMAGES_DIR / "kitti_road.png"), "--out", str(out), "--threshold", "0.3"],
    )
    assert res.exit_code == 0, res.output
    assert "untrained" in res.output.lower()
    with Image.open(out) as im:
        assert im.size == (1242, 375)
    res = CliRunner().invoke(detect, [str(model), str(tmp_path / "nope.png")])
    assert res.exit_code != 0 and "no such image" in res.output
