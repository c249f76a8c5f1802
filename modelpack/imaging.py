"""Images into model inputs, driven only by the model's ModelInfo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from modelpack.metadata import Preprocessing

DATA_DIR = Path(__file__).parent / "data"
IMAGES_DIR = DATA_DIR / "images"


def load_image(path: str | Path) -> Image.Image:
    """An RGB Pillow image, with a clear error for a missing or non-image file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc


def to_pixels(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """HWC float32 pixels 0..255 at the model's size, in the model's channel order."""
    if image.size != (pre.width, pre.height):
        image = image.resize((pre.width, pre.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    if pre.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    return pixels


def pixels_to_tensor(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """HWC (or NHWC) pixels in channel order → normalised float32 NCHW."""
    if pixels.ndim == 3:
        pixels = pixels[None]
    x = (pixels.astype(np.float32) - np.asarray(pre.mean, dtype=np.float32)) * np.float32(pre.scale)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def preprocess(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """A Pillow image → the model's 1×3×H×W float32 input."""
    return pixels_to_tensor(to_pixels(image, pre), pre)


def load_labels(label_set: str) -> list[str]:
    """Class names of a label set the package knows ("imagenet", "kitti")."""
    if label_set == "imagenet":
        return (DATA_DIR / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    if label_set == "kitti":
        return ["car", "pedestrian", "cyclist"]
    if not label_set:
        return []
    raise ValueError(f"unknown label set {label_set!r}")
