"""How much a candidate model changes a reference model's answers.

Every lossy version (int8, fewer codebook bits, a retrained head) must say
how far it moved from its parent. The evaluation set is fixed and
reproducible: seeded crops, flips and rescales of the real photos shipped in
``modelpack/data/images``, pushed through each model's own preprocessing.

Classifiers: top-1 agreement (same top class), top-5 agreement (the
reference's top class is in the candidate's top 5), top-1 agreement on the
views where the reference is confident (top-1 probability > 0.5), and the max
and mean absolute difference of the output probabilities. Detectors: the same output
differences plus box agreement: the share of the reference's kept detections
that the candidate matches with a same-class box at IoU ≥ 0.5, and their mean
IoU.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from modelpack.detection import DetectorConfig, iou, postprocess
from modelpack.imaging import IMAGES_DIR, load_image, pixels_to_tensor, to_pixels
from modelpack.metadata import ModelInfo
from modelpack.runtime import load_model_proto, make_session, read_model_info

log = logging.getLogger(__name__)

PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "kitti_road.png")
DEFAULT_N = {"classifier": 300, "detector": 24}
BOX_IOU = 0.5
# Many crops leave a classifier unsure, and a near-tie flips under any change;
# agreement on the views the reference is sure about is reported beside it.
CONFIDENT = 0.5


@dataclass(frozen=True)
class View:
    """One evaluation input: a crop of a photo, maybe flipped, maybe rescaled."""

    photo: str
    box: tuple[int, int, int, int]  # left, upper, right, lower in the photo
    flip: bool
    rescale: float  # 1.0, or a down-and-up scale factor that softens detail


def evaluation_views(
    n: int, *, seed: int = 0, photos: tuple[str, ...] = PHOTOS, min_area: float = 0.35
) -> list[View]:
    """``n`` views spread evenly over ``photos``; the same arguments give the same views."""
    rng = np.random.default_rng(seed)
    sizes = {}
    for name in photos:
        with Image.open(IMAGES_DIR / name) as im:
            sizes[name] = im.size
    views: list[View] = []
    for k in range(n):
        name = photos[k % len(photos)]
        w, h = sizes[name]
        if k < len(photos):  # the whole photo first, untouched
            views.append(View(name, (0, 0, w, h), False, 1.0))
            continue
        area = rng.uniform(min_area, 1.0) * w * h
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))) * (w / h)
        cw = int(min(w, round(np.sqrt(area * aspect))))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        flip = bool(rng.random() < 0.5)
        rescale = float(rng.choice([1.0, 1.0, 0.5, 0.75]))
        views.append(View(name, (x0, y0, x0 + cw, y0 + ch), flip, rescale))
    return views


def render(view: View, cache: dict[str, Image.Image] | None = None) -> Image.Image:
    """The view as a Pillow image (before the model's own resize)."""
    cache = cache if cache is not None else {}
    if view.photo not in cache:
        cache[view.photo] = load_image(IMAGES_DIR / view.photo)
    im = cache[view.photo].crop(view.box)
    if view.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if view.rescale != 1.0:
        small = (max(1, int(im.width * view.rescale)), max(1, int(im.height * view.rescale)))
        im = im.resize(small, Image.Resampling.BILINEAR).resize(im.size, Image.Resampling.BILINEAR)
    return im


@dataclass(frozen=True)
class FidelityReport:
    kind: str
    n_inputs: int
    seed: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    box_agreement: float | None = None
    mean_box_iou: float | None = None
    n_reference_boxes: int | None = None
    confident_top1_agreement: float | None = None  # on views where the reference's top-1 prob > 0.5
    n_confident: int | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _runner(model: bytes, info: ModelInfo, threads: int):
    session = make_session(model, threads=threads)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {info.input_name: x})[0], dtype=np.float32)

    return run


def _load(model: bytes | str | Path) -> tuple[bytes, ModelInfo]:
    if isinstance(model, bytes):
        data = model
    elif Path(model).is_file():
        data = Path(model).read_bytes()
    else:
        raise FileNotFoundError(f"{model}: no such model file")
    info = read_model_info(
        load_model_proto(data, what=None if isinstance(model, bytes) else str(model))
    )
    if info is None:
        raise ValueError(
            f"{model if not isinstance(model, bytes) else 'model'}: no squeeze-ota ModelInfo in its metadata"
        )
    return data, info


def model_outputs(
    model: bytes | str | Path, views: list[View], *, threads: int = 1
) -> tuple[ModelInfo, list[np.ndarray]]:
    """The model's first output on each view (through its own preprocessing)."""
    data, info = _load(model)
    run = _runner(data, info, threads)
    images: dict[str, Image.Image] = {}
    pre = info.preprocessing
    return info, [run(pixels_to_tensor(to_pixels(render(v, images), pre), pre)) for v in views]


def views_for(kind: str, n: int | None = None, seed: int = 0) -> list[View]:
    """The evaluation set for a kind of model: all photos for classifiers, the
    road scene for detectors (larger crops: objects must stay in view)."""
    n = n or DEFAULT_N[kind]
    if kind == "detector":
        return evaluation_views(n, seed=seed, photos=("kitti_road.png",), min_area=0.5)
    return evaluation_views(n, seed=seed)


def compare(
    reference: bytes | str | Path,
    candidate: bytes | str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    threads: int = 1,
) -> FidelityReport:
    """Run both models over the evaluation set and measure their agreement."""
    _, ref_info = _load(reference)
    _, cand_info = _load(candidate)
    if ref_info.kind != cand_info.kind:
        raise ValueError(f"cannot compare a {ref_info.kind} with a {cand_info.kind}")
    views = views_for(ref_info.kind, n, seed)
    _, ref_outs = model_outputs(reference, views, threads=threads)
    _, cand_outs = model_outputs(candidate, views, threads=threads)
    return agreement(ref_info, ref_outs, cand_info, cand_outs, seed=seed)


def agreement(
    ref_info: ModelInfo,
    ref_outs: list[np.ndarray],
    cand_info: ModelInfo,
    cand_outs: list[np.ndarray],
    *,
    seed: int = 0,
) -> FidelityReport:
    """Agreement figures from both models' outputs on the same views."""
    if ref_info.kind != cand_info.kind:
        raise ValueError(f"cannot compare a {ref_info.kind} with a {cand_info.kind}")
    kind = ref_info.kind
    max_diff, sum_diff, count = 0.0, 0.0, 0
    top1 = top5 = conf_n = conf_agree = 0
    matched, total_boxes, iou_sum = 0, 0, 0.0
    for a, b in zip(ref_outs, cand_outs, strict=True):
        if a.shape != b.shape:
            raise ValueError(f"output shapes differ: reference {a.shape}, candidate {b.shape}")
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        max_diff = max(max_diff, float(d.max()))
        sum_diff += float(d.sum())
        count += d.size
        if kind == "classifier":
            ra, rb = a.reshape(-1), b.reshape(-1)
            best = int(np.argmax(ra))
            same = int(best == int(np.argmax(rb)))
            top1 += same
            if ra[best] > CONFIDENT:
                conf_n += 1
                conf_agree += same
            top5 += int(best in np.argsort(-rb, kind="stable")[:5])
        else:
            m, t, s = _box_agreement(
                a, b, DetectorConfig.from_info(ref_info), DetectorConfig.from_info(cand_info)
            )
            matched, total_boxes, iou_sum = matched + m, total_boxes + t, iou_sum + s
    n = len(ref_outs)
    base = {
        "kind": kind,
        "n_inputs": n,
        "seed": seed,
        "max_abs_diff": max_diff,
        "mean_abs_diff": sum_diff / max(count, 1),
    }
    if kind == "classifier":
        return FidelityReport(
            **base,  # type: ignore[arg-type]
            top1_agreement=top1 / n,
            top5_agreement=top5 / n,
            confident_top1_agreement=conf_agree / conf_n if conf_n else None,
            n_confident=conf_n,
        )
    return FidelityReport(
        **base,  # type: ignore[arg-type]
        box_agreement=matched / total_boxes if total_boxes else 1.0,
        mean_box_iou=iou_sum / total_boxes if total_boxes else 1.0,
        n_reference_boxes=total_boxes,
    )


def _box_agreement(
    a: np.ndarray, b: np.ndarray, cfg_a: DetectorConfig, cfg_b: DetectorConfig
) -> tuple[int, int, float]:
    """(matched, reference boxes, sum of best IoUs) for one input."""
    ref = postprocess(a, cfg_a)
    cand = postprocess(b, cfg_b)
    matched, iou_sum = 0, 0.0
    for d in ref:
        same = [c.box for c in cand if c.class_id == d.class_id]
        best = float(iou(np.asarray(d.box), np.asarray(same)).max()) if same else 0.0
        iou_sum += best
        matched += int(best >= BOX_IOU)
    return matched, len(ref), iou_sum
