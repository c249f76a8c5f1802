"""``ota pack`` round trips through files and refuses bad patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from ota.cli import cli
from tests.codecs.codectest_models import codebook_tensor, model_bytes


def _models(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(11)
    w = codebook_tensor(rng, (64, 64))
    old = tmp_path / "old.onnx"
    new = tmp_path / "new.onnx"
    other = tmp_path / "other.onnx"
    old.write_bytes(model_bytes({"w": w, "head": rng.normal(size=(10, 64)).astype(np.float32)}))
    new.write_bytes(model_bytes({"w": w, "head": rng.normal(size=(10, 64)).astype(np.float32)}))
    other.write_bytes(model_bytes({"w": codebook_tensor(rng, (64, 64))}))
    return old, new, other


def test_diff_then_apply_rebuilds_new_and_reports_choice(tmp_path: Path) -> None:
    old, new, _ = _models(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["pack", "diff", str(old), str(new), "-o", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "diff tensordelta" in res.output and "bytedelta" in res.output
    res = runner.invoke(
        cli, ["pack", "apply", str(old), str(tmp_path / "p"), "-o", str(tmp_path / "rebuilt.onnx")]
    )
    assert res.exit_code == 0, res.output
    assert "verified" in res.output
    assert (tmp_path / "rebuilt.onnx").read_bytes() == new.read_bytes()


def test_apply_refuses_wrong_base_and_corrupt_patch_without_writing(tmp_path: Path) -> None:
    old, new, other = _models(tmp_path)
    runner = CliRunner()
    assert (
        runner.invoke(
            cli, ["pack", "diff", str(old), str(new), "-o", str(tmp_path / "p")]
        ).exit_code
        == 0
    )
    out = tmp_path / "out.onnx"
    res = runner.invoke(cli, ["pack", "apply", str(other), str(tmp_path / "p"), "-o", str(out)])
    assert res.exit_code == 2 and "wrong base" in res.output
    data = bytearray((tmp_path / "p").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "bad").write_bytes(bytes(data))
    res = runner.invoke(cli, ["pack", "apply", str(old), str(tmp_path / "bad"), "-o", str(out)])
    assert res.exit_code == 2 and "corrupted" in res.output
    assert not out.exists()


def test_encode_decode_round_trip(tmp_path: Path) -> None:
    _, new, _ = _models(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["pack", "encode", str(new), "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert "encode deepcompression" in res.output or "encode full" in res.output
    res = runner.invoke(
        cli, ["pack", "decode", str(tmp_path / "e"), "-o", str(tmp_path / "m.onnx")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.onnx").read_bytes() == new.read_bytes()
