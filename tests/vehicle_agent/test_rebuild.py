"""CodecRebuilder: a delta is rebuilt against the installed model without
hashing it first, and still refused, naming the base, when the installed
bytes are not the delta's base."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from modelpack import codecs
from tests.codecs.codectest_models import codebook_tensor, model_bytes
from vehicle_agent.engine import StepFailed
from vehicle_agent.journal import Job
from vehicle_agent.rebuild import CodecRebuilder
from vehicle_agent.slots import SlotRecord, SlotStore

RNG = np.random.default_rng(16)
W = codebook_tensor(RNG, (32, 16, 3, 3))
OLD = model_bytes({"w": W, "b": RNG.normal(size=32).astype(np.float32)})
NEW = model_bytes({"w": W * 1.01, "b": RNG.normal(size=32).astype(np.float32)})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _setup(tmp_path: Path, installed: bytes, blob: bytes) -> tuple[CodecRebuilder, Job, Path]:
    slots = SlotStore(tmp_path / "state")
    src = tmp_path / "installed.onnx"
    src.write_bytes(installed)
    slot = slots.stage("m", src, SlotRecord("1.0.0", _sha(OLD), len(OLD)))
    slots.activate("m", slot)
    encoded = tmp_path / "delta.bin"
    encoded.write_bytes(blob)
    job = Job("m", "1.0.1", _sha(NEW), len(NEW), encoding="tensordelta", base_sha256=_sha(OLD))
    work = tmp_path / "work"
    work.mkdir()
    return CodecRebuilder(slots, work), job, encoded


def test_delta_rebuilds_hashing_only_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilder, job, encoded = _setup(tmp_path, OLD, codecs.encode("tensordelta", NEW, OLD))
    seen: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> object:
        seen.append(len(data))
        return real(data)

    monkeypatch.setattr(hashlib, "sha256", counting)
    assert rebuilder.rebuild(job, encoded).read_bytes() == NEW
    assert seen == [len(NEW)]  # the installed 5 MB-class base is not hashed on the way


def test_damaged_installed_model_is_refused_as_another_base(tmp_path: Path) -> None:
    damaged = bytearray(OLD)
    damaged[len(OLD) // 2] ^= 0x10
    rebuilder, job, encoded = _setup(
        tmp_path, bytes(damaged), codecs.encode("tensordelta", NEW, OLD)
    )
    with pytest.raises(StepFailed, match="another base than the installed model") as err:
        rebuilder.rebuild(job, encoded)
    assert _sha(bytes(damaged))[:16] in str(err.value)


def test_delta_whose_header_names_another_base_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    other = model_bytes({"w": W * 0.5, "b": np.zeros(32, np.float32)})
    rebuilder, job, encoded = _setup(tmp_path, OLD, codecs.encode("tensordelta", NEW, other))
    with pytest.raises(StepFailed, match="another base.*as the caller knows it"):
        rebuilder.rebuild(job, encoded)
