"""Loading a model into ONNX Runtime and proving it works before it goes live."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelpack.metadata import ModelInfo

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
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def self_test(session: ort.InferenceSession, info: ModelInfo) -> None:
    """Run the signed golden input and compare with the signed expected output.

    Without a golden vector (a model published without one) the check is
    weaker but still real: the model must run on a well-formed input and
    produce finite outputs of a stable shape.
    """
    inputs = session.get_inputs()
    if not inputs:
        raise SelfTestFailed("model has no inputs")
    name = inputs[0].name
    if info.selftest is not None:
        from modelpack.selftest import selftest_input

        x = selftest_input(info, info.selftest.seed)
    else:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inputs[0].shape]
        x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    try:
        outputs = session.run(None, {name: x})
    except Exception as e:  # ORT raises its own exception types
        raise SelfTestFailed(f"inference failed: {e}") from None
    out = np.asarray(outputs[0])
    if not np.all(np.isfinite(out)):
        raise SelfTestFailed("output contains NaN or Inf")
    st = info.selftest
    if st is None:
        return
    flat = out.reshape(-1)
    if st.expected:
        got = flat[: len(st.expected)]
        if not np.allclose(got, np.asarray(st.expected, dtype=np.float32), atol=st.atol, rtol=0):
            worst = float(np.max(np.abs(got - np.asarray(st.expected))))
            raise SelfTestFailed(f"golden output differs by up to {worst:.3g} (tolerance {st.atol})")
    if st.expected_top1 is not None:
        top1 = int(np.argmax(out.reshape(out.shape[0], -1)[0]))
        if top1 != st.expected_top1:
            raise SelfTestFailed(f"golden input classified as {top1}, expected {st.expected_top1}")
