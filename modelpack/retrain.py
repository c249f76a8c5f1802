"""Retraining SqueezeNet v1.0's classifier head (conv10) by gradient descent, in numpy.

The backbone (conv1..fire9) is the real trained network run in ONNX Runtime;
its ``fire9/concat`` activations on seeded views of the real photos are the
features. The head is the exact inference path of the released network:
conv10 (1x1, padding 1) → ReLU → global average pool → softmax, so the
gradient below is the true gradient of the cross-entropy of that path. The
pruning mask of conv10 is kept (pruned weights stay zero), as Deep
Compression's own retraining does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelpack.fidelity import evaluation_views, render
from modelpack.imaging import pixels_to_tensor, to_pixels
from modelpack.runtime import make_session, read_model_info

log = logging.getLogger(__name__)

FEATURE = "fire9/concat"
# Human labels where ImageNet has the right class; the other photos take the
# released model's own answer on the whole photo (a pseudo-label).
HUMAN_LABELS = {
    "chelsea.png": 285,
    "coffee.png": 967,
    "rocket.jpg": 812,
}  # Egyptian cat, espresso, space shuttle


@dataclass(frozen=True)
class HeadTrainResult:
    weight: np.ndarray  # (1000, 512, 1, 1)
    bias: np.ndarray  # (1000,)
    losses: tuple[float, ...]  # per step
    n_views: int
    steps: int
    lr: float
    labels: dict[str, int]


def with_feature_output(model_bytes: bytes, name: str = FEATURE) -> bytes:
    """The same model with an intermediate activation added as an output."""
    model = onnx.load_model_from_string(model_bytes)
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model.SerializeToString()


def features(model_bytes: bytes, n_views: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``fire9/concat`` activations (N, 512, 13, 13) of seeded views, and each view's photo."""
    info = read_model_info(model_bytes)
    if info is None:
        raise ValueError("model has no ModelInfo")
    session = make_session(with_feature_output(model_bytes), threads=2)
    views = evaluation_views(n_views, seed=seed)
    cache: dict = {}
    feats = []
    for v in views:
        x = pixels_to_tensor(to_pixels(render(v, cache), info.preprocessing), info.preprocessing)
        feats.append(session.run([FEATURE], {info.input_name: x})[0][0])
    return np.stack(feats).astype(np.float32), [v.photo for v in views]


def pseudo_labels(model_bytes: bytes, photos: list[str]) -> dict[str, int]:
    from modelpack.classify import Classifier
    from modelpack.imaging import IMAGES_DIR

    clf = Classifier(model_bytes)
    return {
        p: HUMAN_LABELS.get(p, clf.classify(IMAGES_DIR / p, 1)[0].class_id)
        for p in sorted(set(photos))
    }


def _as_matrix(f: np.ndarray) -> np.ndarray:
    """(N, K, H, W) features → (K, N·H·W), so each step is two plain GEMMs."""
    n, k, h, w = f.shape
    return np.ascontiguousarray(f.reshape(n, k, h * w).transpose(1, 0, 2).reshape(k, n * h * w))


def _pooled(
    w: np.ndarray, b: np.ndarray, fm: np.ndarray, shape: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    n, _, h, wd = shape
    interior = h * wd
    total = (h + 2) * (wd + 2)
    z = w @ fm
    z += b[:, None]  # (C, N·P) interior pre-activations
    act = (
        np.maximum(z, 0).reshape(w.shape[0], n, interior).sum(axis=2, dtype=np.float64).T
    )  # (N, C)
    pooled = (act + (total - interior) * np.maximum(b, 0)[None]) / total
    return pooled, z


def head_forward(w: np.ndarray, b: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits before softmax (N, C) and the interior pre-activations (C, N·P).

    With padding 1, the 15x15 output has 169 interior positions (W·f + b) and
    56 border positions that see only zeros (b)."""
    return _pooled(w, b, _as_matrix(f), f.shape)


def train_head(
    w0: np.ndarray,
    b0: np.ndarray,
    f: np.ndarray,
    targets: np.ndarray,
    *,
    steps: int = 30,
    lr: float = 0.5,
    momentum: float = 0.9,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Full-batch gradient descent with momentum on the cross-entropy of the
    head's softmax; returns new (W, b) and the loss at each step."""
    w = w0.reshape(w0.shape[0], -1).astype(np.float32).copy()
    b = b0.astype(np.float32).copy()
    mask = (w != 0).astype(np.float32)
    n, _, h, wd = f.shape
    total = (h + 2) * (wd + 2)
    border = total - h * wd
    fm = _as_matrix(f.astype(np.float32))
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    losses = []
    for _ in range(steps):
        s, z = _pooled(w, b, fm, f.shape)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        losses.append(float(-np.mean(np.log(p[np.arange(n), targets] + 1e-12))))
        g = p
        g[np.arange(n), targets] -= 1.0
        g /= n  # dL/ds, (N, C)
        # dL/dz at each interior position: dL/ds / total where the ReLU is open
        gz = (z > 0) * np.repeat(g.T.astype(np.float32) / np.float32(total), h * wd, axis=1)
        gw = (gz @ fm.T) * mask
        gb = gz.sum(axis=1) + g.sum(axis=0) * border / total * (b > 0)
        vw = momentum * vw - lr * gw
        vb = momentum * vb - lr * gb
        w += vw
        b += vb
    return w.reshape(w0.shape), b, losses


def retrain_head(
    model_bytes: bytes, *, n_views: int = 40, seed: int = 101, steps: int = 30, lr: float = 0.5
) -> HeadTrainResult:
    """Retrain conv10 of a SqueezeNet v1.0 model on views of the real photos."""
    model = onnx.load_model_from_string(model_bytes)
    inits = {t.name: t for t in model.graph.initializer}
    w0 = onnx.numpy_helper.to_array(inits["conv10/weight"])
    b0 = onnx.numpy_helper.to_array(inits["conv10/bias"])
    f, photos = features(model_bytes, n_views, seed)
    labels = pseudo_labels(model_bytes, photos)
    targets = np.array([labels[p] for p in photos])
    w, b, losses = train_head(w0, b0, f, targets, steps=steps, lr=lr)
    log.info("head retrain: loss %.4f -> %.4f over %d steps", losses[0], losses[-1], steps)
    return HeadTrainResult(w, b, tuple(losses), n_views, steps, lr, labels)
