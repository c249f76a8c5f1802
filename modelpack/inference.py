"""One entry point for running any package on an image, whatever its kind.

The agent holds a session and the signed ModelInfo; ``perceive`` reads the
kind, preprocessing, labels and (for detectors) anchors from the ModelInfo, so
a new classifier or detector needs no agent code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from modelpack.classify import Prediction, top_k
from modelpack.detection import Detection, DetectorConfig, postprocess
from modelpack.imaging import load_image, load_labels, preprocess
from modelpack.metadata import ModelInfo


def perceive(
    session: ort.InferenceSession, info: ModelInfo, image: Image.Image | str | Path, *, k: int = 5
) -> list[Prediction] | list[Detection]:
    """Top-k predictions for a classifier, post-processed detections (in the
    image's own pixels) for a detector."""
    if not isinstance(image, Image.Image):
        image = load_image(image)
    pre = info.preprocessing
    out = np.asarray(
        session.run(None, {info.input_name: preprocess(image, pre)})[0], dtype=np.float32
    )
    if info.kind == "classifier":
        return top_k(out[0], load_labels(info.labels), k)
    if info.kind == "detector":
        scale = (image.width / pre.width, image.height / pre.height)
        return postprocess(out, DetectorConfig.from_info(info), scale=scale)
    raise ValueError(f"unknown model kind {info.kind!r}")
