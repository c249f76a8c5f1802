"""Image classification with any classifier package: preprocessing, labels
and output layout all come from the model's embedded ModelInfo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from modelpack.imaging import load_image, load_labels, preprocess
from modelpack.metadata import ModelInfo
from modelpack.runtime import make_session, session_model_info


@dataclass(frozen=True)
class Prediction:
    class_id: int
    label: str
    prob: float


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """The output as a distribution: kept as is when it already is one
    (SqueezeNet ends in softmax), softmaxed otherwise (logit outputs)."""
    scores = scores.astype(np.float64)
    if scores.min() >= 0 and abs(scores.sum() - 1.0) < 1e-3:
        return scores
    e = np.exp(scores - scores.max())
    return e / e.sum()


def top_k(scores: np.ndarray, labels: list[str], k: int) -> list[Prediction]:
    probs = as_probabilities(np.asarray(scores).reshape(-1))
    order = np.argsort(-probs, kind="stable")[:k]
    return [
        Prediction(int(i), labels[i] if i < len(labels) else str(int(i)), float(probs[i]))
        for i in order
    ]


class Classifier:
    """An ORT session plus the facts needed to feed it and read it."""

    def __init__(self, model: bytes | str | Path, *, threads: int = 1) -> None:
        session = make_session(model, threads=threads)
        info = session_model_info(session)
        if info is None:
            raise ValueError(
                f"{model if not isinstance(model, bytes) else 'model'}: no squeeze-ota ModelInfo in its metadata"
            )
        if info.kind != "classifier":
            raise ValueError(f"model is a {info.kind}, not a classifier")
        self.info: ModelInfo = info
        self.session: ort.InferenceSession = session
        self.labels = load_labels(info.labels)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Raw first output for an NCHW batch."""
        return np.asarray(self.session.run(None, {self.info.input_name: x})[0], dtype=np.float32)

    def classify(self, image: Image.Image | str | Path, k: int = 5) -> list[Prediction]:
        if not isinstance(image, Image.Image):
            image = load_image(image)
        return top_k(self.scores(preprocess(image, self.info.preprocessing))[0], self.labels, k)


def classify(
    model: bytes | str | Path, image: Image.Image | str | Path, k: int = 5
) -> list[Prediction]:
    """Top-k predictions of ``model`` on ``image``."""
    return Classifier(model).classify(image, k)
