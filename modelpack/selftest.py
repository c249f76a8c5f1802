"""Golden self-tests: a seeded input and the model's expected answer.

The registry's builder computes a ``SelfTest`` once with ONNX Runtime and
embeds it in the model's ModelInfo; the agent regenerates the same input from
the seed and checks a freshly staged model against it before switching.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from modelpack.metadata import ModelInfo, SelfTest
from modelpack.runtime import make_session

log = logging.getLogger(__name__)

N_EXPECTED = 16  # values of the flattened first output kept in the metadata
# Four significant digits: far finer than the tolerance (1% of the largest value),
# coarse enough that float noise between CPUs rarely changes the embedded
# values, hence the model's bytes.
SIGNIFICANT = 4


def selftest_input(info: ModelInfo, seed: int) -> np.ndarray:
    """The golden input: uniform 0..255 pixels (in the model's channel order)
    through the model's preprocessing, as float32 NCHW."""
    pre = info.preprocessing
    batch = int(info.input_shape[0]) if info.input_shape else 1
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0.0, 255.0, size=(batch, pre.height, pre.width, 3)).astype(np.float32)
    x = (pixels - np.asarray(pre.mean, dtype=np.float32)) * np.float32(pre.scale)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def _run(session: ort.InferenceSession, info: ModelInfo, seed: int) -> np.ndarray:
    out = session.run(None, {info.input_name: selftest_input(info, seed)})
    return np.asarray(out[0], dtype=np.float32).reshape(-1)


def make_selftest(
    model_bytes: bytes, info: ModelInfo, *, seed: int | None = None, atol: float | None = None
) -> SelfTest:
    """Run the model on its golden input and record the expected answer.

    The default tolerance is 1% of the largest expected magnitude: far above
    float noise between CPUs, far below what a wrong or damaged model gives.
    """
    seed = seed if seed is not None else (info.selftest.seed if info.selftest else 0)
    flat = _run(make_session(model_bytes), info, seed)
    expected = tuple(float(f"{float(v):.{SIGNIFICANT}g}") for v in flat[:N_EXPECTED])
    top1 = int(np.argmax(flat)) if info.kind == "classifier" else None
    if atol is None:
        atol = float(f"{0.01 * max((abs(v) for v in expected), default=0.0) + 1e-7:.3g}")
    return SelfTest(seed=seed, expected=expected, expected_top1=top1, atol=atol)


def with_selftest(model_bytes: bytes, info: ModelInfo, *, seed: int = 0) -> ModelInfo:
    return dataclasses.replace(info, selftest=make_selftest(model_bytes, info, seed=seed))


@dataclass(frozen=True)
class SelfTestResult:
    ok: bool
    reason: str
    max_abs_diff: float
    top1: int | None


def run_selftest(session: ort.InferenceSession, info: ModelInfo) -> SelfTestResult:
    """Check a loaded model against the SelfTest in its ModelInfo."""
    st = info.selftest
    if st is None:
        return SelfTestResult(False, "model metadata has no self-test", float("nan"), None)
    flat = _run(session, info, st.seed)
    if not np.all(np.isfinite(flat)):
        return SelfTestResult(
            False, "self-test output has NaN or infinite values", float("inf"), None
        )
    got = flat[: len(st.expected)]
    if got.size != len(st.expected):
        return SelfTestResult(
            False,
            f"self-test output has {flat.size} values, expected at least {len(st.expected)}",
            float("inf"),
            None,
        )
    diff = (
        float(np.max(np.abs(got - np.asarray(st.expected, dtype=np.float32)))) if got.size else 0.0
    )
    top1 = int(np.argmax(flat)) if info.kind == "classifier" else None
    if diff > st.atol:
        return SelfTestResult(
            False, f"self-test output differs by {diff:.3g} (tolerance {st.atol:g})", diff, top1
        )
    if st.expected_top1 is not None and top1 != st.expected_top1:
        return SelfTestResult(
            False, f"self-test top-1 is class {top1}, expected {st.expected_top1}", diff, top1
        )
    return SelfTestResult(True, "ok", diff, top1)
