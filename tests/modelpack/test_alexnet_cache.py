"""AlexNet, the size baseline: built into a cache, ~61 M parameters, runs in ORT."""

from __future__ import annotations

import onnx
import pytest

from modelpack import cache, zoo
from modelpack.runtime import make_session, read_model_info
from modelpack.selftest import run_selftest
from modelpack.zoo.graph import param_count


def test_alexnet_builds_into_cache_and_runs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTA_CACHE", str(tmp_path))
    path = zoo.build_cached("alexnet")
    assert path.is_relative_to(tmp_path)
    data = path.read_bytes()
    assert 240_000_000 < len(data) < 250_000_000
    model = onnx.load_model_from_string(data)
    assert param_count(model) == 60_965_224  # BVLC AlexNet
    info = read_model_info(model)
    assert info is not None and info.trained is False and "UNTRAINED" in info.provenance
    del model
    assert run_selftest(make_session(data), info).ok
    # A second call reuses the entry instead of rebuilding.
    mtime = path.stat().st_mtime_ns
    assert zoo.build_cached("alexnet") == path and path.stat().st_mtime_ns == mtime


def test_cache_rebuilds_a_damaged_entry(tmp_path) -> None:
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        return b"model-bytes" * 10

    p = cache.cached("x/m.onnx", build, root=tmp_path)
    assert cache.cached("x/m.onnx", build, root=tmp_path) == p and len(calls) == 1
    p.write_bytes(b"model-bytes")  # truncated
    assert not cache.is_valid(p)
    cache.cached("x/m.onnx", build, root=tmp_path)
    assert len(calls) == 2 and p.read_bytes() == b"model-bytes" * 10
