"""SqueezeDet post-processing, pure numpy: anchors, delta decoding, per-class NMS.

Follows the paper's reference implementation (KITTI config): anchors are
ordered cell by cell (row-major over the grid) and anchor by anchor within a
cell, matching the NHWC view of the ConvDet output; box sizes use ``exp``
linearised above ``exp_thresh`` so an untrained or adversarial output cannot
blow up; detections keep the top-N by score, drop those below the probability
threshold, then run greedy NMS per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelpack.metadata import ModelInfo


@dataclass(frozen=True)
class DetectorConfig:
    image_height: int
    image_width: int
    grid: tuple[int, int]  # H, W
    anchor_shapes: tuple[tuple[float, float], ...]  # (width, height) in pixels
    classes: tuple[str, ...]
    exp_thresh: float = 1.0
    top_n: int = 64
    nms_iou: float = 0.4
    prob_thresh: float = 0.005
    plot_thresh: float = 0.4

    @property
    def n_anchors(self) -> int:
        return len(self.anchor_shapes)

    @classmethod
    def from_info(cls, info: ModelInfo) -> DetectorConfig:
        e: dict[str, Any] = info.extra
        try:
            return cls(
                image_height=info.preprocessing.height,
                image_width=info.preprocessing.width,
                grid=(int(e["grid"][0]), int(e["grid"][1])),
                anchor_shapes=tuple((float(w), float(h)) for w, h in e["anchor_shapes"]),
                classes=tuple(e["classes"]),
                exp_thresh=float(e.get("exp_thresh", 1.0)),
                top_n=int(e.get("top_n", 64)),
                nms_iou=float(e.get("nms_iou", 0.4)),
                prob_thresh=float(e.get("prob_thresh", 0.005)),
                plot_thresh=float(e.get("plot_thresh", 0.4)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(
                f"detector metadata lacks or garbles its anchor facts: {exc!r}"
            ) from exc


@dataclass(frozen=True)
class Detection:
    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels


def anchors(cfg: DetectorConfig) -> np.ndarray:
    """(H*W*B, 4) anchors as (cx, cy, w, h): centres at i*W_img/(W+1), i = 1..W."""
    gh, gw = cfg.grid
    cx = np.arange(1, gw + 1, dtype=np.float64) * cfg.image_width / (gw + 1)
    cy = np.arange(1, gh + 1, dtype=np.float64) * cfg.image_height / (gh + 1)
    shapes = np.asarray(cfg.anchor_shapes, dtype=np.float64)
    b = len(shapes)
    out = np.empty((gh, gw, b, 4), dtype=np.float64)
    out[..., 0] = cx[None, :, None]
    out[..., 1] = cy[:, None, None]
    out[..., 2] = shapes[None, None, :, 0]
    out[..., 3] = shapes[None, None, :, 1]
    return out.reshape(-1, 4)


def safe_exp(x: np.ndarray, thresh: float) -> np.ndarray:
    """exp(x) up to ``thresh``, then the tangent line exp(thresh)·(x − thresh + 1)."""
    x = np.asarray(x, dtype=np.float64)
    slope = np.exp(thresh)
    return np.where(x > thresh, slope * (x - thresh + 1.0), np.exp(np.minimum(x, thresh)))


def decode_boxes(anchor_boxes: np.ndarray, deltas: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """Anchors (cx, cy, w, h) + deltas (dx, dy, dw, dh) → corner boxes clipped to the image."""
    ax, ay, aw, ah = anchor_boxes.T
    dx, dy, dw, dh = np.asarray(deltas, dtype=np.float64).T
    cx = ax + dx * aw
    cy = ay + dy * ah
    w = aw * safe_exp(dw, cfg.exp_thresh)
    h = ah * safe_exp(dh, cfg.exp_thresh)
    xmin = np.clip(cx - w / 2, 0, cfg.image_width - 1)
    ymin = np.clip(cy - h / 2, 0, cfg.image_height - 1)
    xmax = np.clip(cx + w / 2, 0, cfg.image_width - 1)
    ymax = np.clip(cy + h / 2, 0, cfg.image_height - 1)
    return np.stack([xmin, ymin, xmax, ymax], axis=1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box against many."""
    ix = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    iy = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    # Clipping can flatten boxes to zero area; such a box still matches itself.
    same = np.all(boxes == box, axis=1)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), same.astype(np.float64))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> list[int]:
    """Greedy NMS: indices kept, best first; a box whose IoU with a kept,
    better box exceeds ``iou_thresh`` is dropped. Ties keep the earlier box."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    alive = np.ones(len(order), dtype=bool)
    for pos, i in enumerate(order):
        if not alive[pos]:
            continue
        keep.append(int(i))
        rest = order[pos + 1 :]
        if rest.size:
            alive[pos + 1 :] &= iou(boxes[i], boxes[rest]) <= iou_thresh
    return keep


def split_output(
    preds: np.ndarray, cfg: DetectorConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ConvDet output (1, B*(C+5), H, W) → class probs (A, C), confidences (A,), deltas (A, 4)."""
    b, c = cfg.n_anchors, len(cfg.classes)
    gh, gw = cfg.grid
    expected = (1, b * (c + 5), gh, gw)
    if tuple(preds.shape) != expected:
        raise ValueError(f"detector output has shape {tuple(preds.shape)}, expected {expected}")
    nhwc = np.asarray(preds[0], dtype=np.float64).transpose(1, 2, 0)  # H, W, channels
    n_cls, n_conf = b * c, b
    logits = nhwc[..., :n_cls].reshape(-1, c)
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    conf = 1.0 / (1.0 + np.exp(-nhwc[..., n_cls : n_cls + n_conf].reshape(-1)))
    deltas = nhwc[..., n_cls + n_conf :].reshape(-1, 4)
    return probs, conf, deltas


def filter_detections(
    boxes: np.ndarray, class_probs: np.ndarray, conf: np.ndarray, cfg: DetectorConfig
) -> list[Detection]:
    """Score = class prob × confidence; top-N, probability threshold, per-class NMS."""
    scores_all = class_probs * conf[:, None]
    cls = np.argmax(scores_all, axis=1)
    scores = scores_all[np.arange(len(cls)), cls]
    order = np.argsort(-scores, kind="stable")
    if 0 < cfg.top_n < len(order):
        order = order[: cfg.top_n]
    order = order[scores[order] > cfg.prob_thresh]
    dets: list[Detection] = []
    for c in range(len(cfg.classes)):
        idx = order[cls[order] == c]
        for k in nms(boxes[idx], scores[idx], cfg.nms_iou):
            i = idx[k]
            x0, y0, x1, y1 = (float(v) for v in boxes[i])  # boxes is (N, 4)
            dets.append(Detection(c, cfg.classes[c], float(scores[i]), (x0, y0, x1, y1)))
    dets.sort(key=lambda d: -d.score)
    return dets


def postprocess(
    preds: np.ndarray, cfg: DetectorConfig, *, scale: tuple[float, float] = (1.0, 1.0)
) -> list[Detection]:
    """Raw ConvDet output → detections, boxes scaled by (sx, sy) into the source image."""
    probs, conf, deltas = split_output(preds, cfg)
    boxes = decode_boxes(anchors(cfg), deltas, cfg)
    dets = filter_detections(boxes, probs, conf, cfg)
    sx, sy = scale
    if (sx, sy) == (1.0, 1.0):
        return dets
    return [
        Detection(
            d.class_id,
            d.label,
            d.score,
            (d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy),
        )
        for d in dets
    ]
