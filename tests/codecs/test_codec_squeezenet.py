"""The codecs on the real SqueezeNet v1.0 (Deep Compression release weights)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from modelpack import codecs, zoo
from modelpack import deepcompression as dc
from modelpack.zoo.squeezenet import build_from_tensors

RELEASE_BYTES = 675_763


@pytest.fixture(scope="module")
def v10() -> bytes:
    return zoo.build("squeezenet1.0")


@pytest.fixture(scope="module")
def retrained_codebooks() -> bytes:
    """Every layer's codebook moved (the indices kept): Deep Compression's
    codebook fine-tuning."""
    rng = np.random.default_rng(3)
    out = []
    for t in dc.load_shipped_tensors():
        values, inverse = np.unique(t.weight, return_inverse=True)
        moved = np.where(
            values == 0, 0, values * (1 + rng.normal(0, 0.02, size=values.size))
        ).astype(np.float32)
        out.append(
            dataclasses.replace(t, weight=moved[inverse.reshape(-1)].reshape(t.weight.shape))
        )
    return build_from_tensors(out)


def test_first_install_is_lossless_and_under_550kb(v10: bytes) -> None:
    blob = codecs.encode("deepcompression", v10)
    assert len(blob) < 550_000 < RELEASE_BYTES
    assert codecs.decode(blob) == v10


@pytest.mark.alone  # timed
def test_decoders_are_fast_on_the_real_model(v10: bytes, retrained_codebooks: bytes) -> None:
    # Loose bound against an ONNX Runtime session load of the same model, timed in the same
    # rounds so that a busy machine slows both alike (the benchmark measures the real figure,
    # ~1.7x): a regression to per-symbol Python would take seconds, over 100x.
    from modelpack.runtime import make_session

    for blob, base in [
        (codecs.encode("deepcompression", v10), None),
        (codecs.encode("tensordelta", retrained_codebooks, v10), v10),
        (codecs.encode("full", v10), None),
    ]:
        best = load = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            out = codecs.decode(blob, base)
            best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            make_session(v10)
            load = min(load, time.perf_counter() - t0)
        assert best < 6 * load, (codecs.read_header(blob).codec_id, best, load)
        assert len(out) == codecs.read_header(blob).target_length


def test_retrained_codebooks_cost_about_a_kilobyte_a_layer(
    v10: bytes, retrained_codebooks: bytes
) -> None:
    choices = codecs.best_encoding(
        retrained_codebooks, {"v10": v10}, only=("bytedelta", "tensordelta", "deepcompression")
    )
    best = choices[0]
    assert best.codec == "tensordelta"
    assert best.size < 26 * 1100  # 26 layers, 256 values each, plus the graph's changed self-test
    byte_delta = next(c for c in choices if c.codec == "bytedelta")
    assert byte_delta.size > 1.5 * best.size
    assert codecs.decode(best.blob, v10) == retrained_codebooks


def test_unchanged_model_costs_almost_nothing(v10: bytes) -> None:
    blob = codecs.encode("tensordelta", v10, v10)
    assert len(blob) < 1000
    assert codecs.decode(blob, v10) == v10


def test_int8_release_of_the_real_model_costs_a_few_kilobytes(v10: bytes, tmp_path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    (tmp_path / "fp32.onnx").write_bytes(v10)
    quantize_dynamic(
        str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), weight_type=QuantType.QInt8
    )
    int8 = (tmp_path / "int8.onnx").read_bytes()
    blob = codecs.encode("tensordelta", int8, v10)
    assert len(blob) < 10_000 < len(int8) // 100
    assert codecs.decode(blob, v10) == int8


def test_lineage_int8_static_per_channel_is_predicted_from_fp32(v10: bytes) -> None:
    from modelpack.lineage import LineageRecipe, build_lineage

    # The small recipe of tests/modelpack/test_lineage.py: built once, cached.
    paths = build_lineage(
        None, recipe=LineageRecipe(fidelity_n=20, head_views=10, head_steps=4, int8_calibration=8)
    )
    base, int8 = paths["base"].read_bytes(), paths["int8"].read_bytes()
    blob = codecs.encode("tensordelta", int8, base)
    assert len(blob) < 60_000 < len(int8) // 20
    assert codecs.decode(blob, base) == int8
