"""perceive(): one call runs a classifier or a detector from its ModelInfo alone."""

from __future__ import annotations

import dataclasses

import pytest

from modelpack.classify import Prediction
from modelpack.detection import Detection
from modelpack.imaging import IMAGES_DIR
from modelpack.inference import perceive
from modelpack.runtime import make_session, read_model_info


def test_perceive_classifier(squeezenet_bytes: bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    assert info is not None
    preds = perceive(make_session(squeezenet_bytes), info, IMAGES_DIR / "coffee.png", k=3)
    assert len(preds) == 3 and isinstance(preds[0], Prediction) and preds[0].class_id == 967


def test_perceive_detector(squeezedet_bytes: bytes) -> None:
    info = read_model_info(squeezedet_bytes)
    assert info is not None
    dets = perceive(make_session(squeezedet_bytes), info, IMAGES_DIR / "kitti_road.png")
    assert dets and all(isinstance(d, Detection) for d in dets)
    assert max(d.box[2] for d in dets) <= 1242 and max(d.box[3] for d in dets) <= 375


def test_perceive_refuses_an_unknown_kind(squeezenet_bytes: bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    assert info is not None
    with pytest.raises(ValueError, match="unknown model kind"):
        perceive(
            make_session(squeezenet_bytes),
            dataclasses.replace(info, kind="segmenter"),
            IMAGES_DIR / "coffee.png",
        )  # type: ignore[arg-type]
