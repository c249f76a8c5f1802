"""Loading a staged model into ONNX Runtime and proving it before it goes live."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelpack.metadata import ModelInfo
from modelpack.runtime import make_session
from modelpack.selftest import run_selftest

log = logging.getLogger(__name__)


class SelfTestFailed(Exception):
    pass


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    info: ModelInfo
    version: str
    sha256: str


def load_session(path: Path) -> ort.InferenceSession:
    return make_session(Path(path))


def self_test(session: ort.InferenceSession, info: ModelInfo) -> None:
    """Run the signed golden input and compare with the signed expected output.

    A model published without a golden vector still has to run on a
    well-formed input and give finite outputs; that check is weaker, and the
    registry warns the publisher about it.
    """
    if info.selftest is not None:
        result = run_selftest(session, info)
        if not result.ok:
            raise SelfTestFailed(result.reason)
        return
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    try:
        out = np.asarray(session.run(None, {inp.name: x})[0])
    except Exception as e:  # ORT raises its own exception types
        raise SelfTestFailed(f"inference failed: {e}") from None
    if not np.all(np.isfinite(out)):
        raise SelfTestFailed("output contains NaN or Inf")
