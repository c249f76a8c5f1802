"""Running a detector package on an image and drawing its boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from modelpack.detection import Detection, DetectorConfig, postprocess
from modelpack.imaging import load_image, preprocess
from modelpack.metadata import ModelInfo
from modelpack.runtime import make_session, session_model_info

COLOURS = ((255, 64, 64), (64, 200, 64), (64, 128, 255))


class Detector:
    """An ORT session plus the anchor facts from the model's metadata."""

    def __init__(self, model: bytes | str | Path, *, threads: int = 1) -> None:
        session = make_session(model, threads=threads)
        info = session_model_info(session)
        if info is None:
            raise ValueError("model has no squeeze-ota ModelInfo in its metadata")
        if info.kind != "detector":
            raise ValueError(f"model is a {info.kind}, not a detector")
        self.info: ModelInfo = info
        self.config = DetectorConfig.from_info(info)
        self.session = session

    def raw(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.info.input_name: x})[0], dtype=np.float32)

    def detect(self, image: Image.Image | str | Path) -> list[Detection]:
        """Detections in the source image's pixel coordinates."""
        if not isinstance(image, Image.Image):
            image = load_image(image)
        pre = self.info.preprocessing
        scale = (image.width / pre.width, image.height / pre.height)
        return postprocess(self.raw(preprocess(image, pre)), self.config, scale=scale)


def draw(image: Image.Image, detections: list[Detection], threshold: float) -> Image.Image:
    """A copy of ``image`` with the boxes scoring above ``threshold`` drawn on it."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    for d in detections:
        if d.score <= threshold:
            continue
        colour = COLOURS[d.class_id % len(COLOURS)]
        pen.rectangle(d.box, outline=colour, width=2)
        pen.text((d.box[0] + 3, d.box[1] + 2), f"{d.label} {d.score:.2f}", fill=colour)
    return out
