"""Realistic successor versions of the real SqueezeNet v1.0, for the delta
benchmarks and the registry's lossy-version records.

Members (stable file names in the output folder):

* ``squeezenet1.0.onnx`` (``base``): the real released model.
* ``squeezenet1.0-head.onnx`` (``head``): conv10 retrained by gradient descent
  on features of the real backbone (``modelpack.retrain``).
* ``squeezenet1.0-int8.onnx`` (``int8``): ONNX Runtime static int8, QDQ.
* ``squeezenet1.0-cb6.onnx`` (``cb6``): 6-bit shared-weight codebooks.

Each member's ModelInfo says how it was made (``provenance`` and
``extra["lineage"]``) and its measured fidelity against its parent
(``extra["fidelity"]``); ``lineage.json`` repeats both with the hashes. A
full fine-tune with PyTorch is not part of this lineage yet.

The lineage is built once into the cache and reused while its recipe is
unchanged; ``build_lineage(out_dir)`` copies it to ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from modelpack import deepcompression as dc
from modelpack.cache import cache_dir, write_atomically
from modelpack.fidelity import FidelityReport, agreement, model_outputs, views_for
from modelpack.metadata import ModelInfo
from modelpack.quantize import CALIBRATION_SEED, quantize_int8, requantize_codebooks
from modelpack.retrain import retrain_head
from modelpack.runtime import set_model_info
from modelpack.zoo.squeezenet import finish, squeezenet_v10_graph, v10_info

log = logging.getLogger(__name__)

LINEAGE_VERSION = "1"
MANIFEST = "lineage.json"
FILES = {
    "base": "squeezenet1.0.onnx",
    "head": "squeezenet1.0-head.onnx",
    "int8": "squeezenet1.0-int8.onnx",
    "cb6": "squeezenet1.0-cb6.onnx",
}
SUGGESTED_VERSIONS = {"base": "1.0.0", "head": "1.1.0", "int8": "1.2.0", "cb6": "1.3.0"}


@dataclass(frozen=True)
class LineageRecipe:
    """Everything the lineage's bytes depend on; a changed recipe rebuilds."""

    fidelity_n: int = 200
    fidelity_seed: int = 0
    head_views: int = 40
    head_seed: int = 101
    head_steps: int = 20
    head_lr: float = 3e-5
    int8_calibration: int = 32
    codebook_bits: int = 6
    version: str = LINEAGE_VERSION


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_ok(folder: Path, recipe: LineageRecipe) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("recipe") != asdict(recipe):
            return False
        for entry in manifest["members"].values():
            if _sha((folder / entry["file"]).read_bytes()) != entry["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError):
        return False


class _Builder:
    """Builds members one by one, measuring each against the base's outputs."""

    def __init__(self, recipe: LineageRecipe) -> None:
        self.recipe = recipe
        self.base_info = v10_info()
        self.base_model = squeezenet_v10_graph(dc.load_shipped_tensors(), self.base_info)
        self.base_bytes, self.base_info = finish(self.base_model, self.base_info)
        self.views = views_for("classifier", recipe.fidelity_n, recipe.fidelity_seed)
        _, self.base_outs = model_outputs(self.base_bytes, self.views, threads=2)

    def member(self, key: str, model: onnx.ModelProto, provenance: str, facts: dict) -> tuple[bytes, FidelityReport]:
        info = dataclasses.replace(
            self.base_info,
            provenance=provenance,
            selftest=None,
            extra={"lineage": {"member": key, "parent": "base", "parent_sha256": _sha(self.base_bytes), **facts}},
        )
        set_model_info(model, info)
        probe = model.SerializeToString()
        cand_info, outs = model_outputs(probe, self.views, threads=2)
        report = agreement(self.base_info, self.base_outs, cand_info, outs, seed=self.recipe.fidelity_seed)
        info = dataclasses.replace(info, extra={**info.extra, "fidelity": report.to_dict()})
        data, _ = finish(model, info)
        log.info("lineage %s: %d bytes, top-1 agreement %.3f", key, len(data), report.top1_agreement or 0)
        return data, report

    def head(self) -> tuple[bytes, FidelityReport]:
        r = self.recipe
        res = retrain_head(self.base_bytes, n_views=r.head_views, seed=r.head_seed, steps=r.head_steps, lr=r.head_lr)
        tensors = [
            dc.LayerTensors(t.name, res.weight, res.bias) if t.name == "conv10" else t for t in dc.load_shipped_tensors()
        ]
        model = squeezenet_v10_graph(tensors, self.base_info)
        provenance = (
            f"Real SqueezeNet v1.0 with its classifier conv10 retrained: {r.head_steps} steps of full-batch gradient "
            f"descent (momentum 0.9, lr {r.head_lr:g}, pruning mask kept) on the cross-entropy of fire9 features of "
            f"{r.head_views} seeded views (seed {r.head_seed}) of the 5 shipped photos; labels {res.labels} "
            "(chelsea/coffee/rocket by hand, the others the released model's own answer). Loss "
            f"{res.losses[0]:.3f} -> {res.losses[-1]:.3f}. A small, overfitting retrain: a realistic delta, "
            "not a better classifier."
        )
        facts = {"method": "head-retrain", "steps": r.head_steps, "lr": r.head_lr, "views": r.head_views,
                 "seed": r.head_seed, "loss_first": res.losses[0], "loss_last": res.losses[-1], "labels": res.labels}
        return self.member("head", model, provenance, facts)

    def int8(self) -> tuple[bytes, FidelityReport]:
        r = self.recipe
        model = quantize_int8(self.base_bytes, n_calibration=r.int8_calibration)
        provenance = (
            "Real SqueezeNet v1.0 quantized to int8 by onnxruntime.quantization.quantize_static (QDQ, per-channel "
            f"int8 weights, uint8 activations, MinMax calibration on {r.int8_calibration} seeded views, seed "
            f"{CALIBRATION_SEED}). No retraining."
        )
        facts = {"method": "int8-static-qdq", "calibration_views": r.int8_calibration, "calibration_seed": CALIBRATION_SEED}
        return self.member("int8", model, provenance, facts)

    def codebook(self) -> tuple[bytes, FidelityReport]:
        bits = self.recipe.codebook_bits
        tensors = requantize_codebooks(dc.load_shipped(), bits)
        model = squeezenet_v10_graph(tensors, self.base_info)
        provenance = (
            f"Real SqueezeNet v1.0 with each layer's 8-bit codebook re-clustered to {bits} bits "
            f"({2**bits - 1} shared non-zero values + 0, weighted linear-init k-means; pruning kept). No retraining."
        )
        facts = {"method": f"codebook-{bits}bit", "bits": bits, "net_bytes": len(dc.encode_tensors(tensors))}
        return self.member("cb6", model, provenance, facts)


def _build(folder: Path, recipe: LineageRecipe) -> None:
    b = _Builder(recipe)
    built: dict[str, tuple[bytes, FidelityReport | None]] = {"base": (b.base_bytes, None)}
    built["head"] = b.head()
    built["int8"] = b.int8()
    built["cb6"] = b.codebook()
    members = {}
    for key, (data, report) in built.items():
        write_atomically(folder / FILES[key], data)
        members[key] = {
            "file": FILES[key],
            "sha256": _sha(data),
            "size": len(data),
            "parent": None if key == "base" else "base",
            "suggested_version": SUGGESTED_VERSIONS[key],
            "fidelity_vs_parent": report.to_dict() if report else None,
        }
    manifest = {"recipe": asdict(recipe), "members": members}
    write_atomically(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())


def lineage_cache(recipe: LineageRecipe) -> Path:
    return cache_dir() / "lineage" / f"v{recipe.version}-{_sha(json.dumps(asdict(recipe), sort_keys=True).encode())[:12]}"


def build_lineage(out_dir: Path | str | None = None, *, recipe: LineageRecipe | None = None, force: bool = False) -> dict[str, Path]:
    """The lineage's files by member key (``base``, ``head``, ``int8``, ``cb6``)
    plus ``manifest``; built into the cache on first use, then copied to ``out_dir``."""
    recipe = recipe or LineageRecipe()
    folder = lineage_cache(recipe)
    if force or not _manifest_ok(folder, recipe):
        _build(folder, recipe)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if out.resolve() != folder.resolve():
            for name in (*FILES.values(), MANIFEST):
                shutil.copyfile(folder / name, out / name)
        folder = out
    paths = {key: folder / name for key, name in FILES.items()}
    paths["manifest"] = folder / MANIFEST
    return paths


def read_manifest(folder: Path | str) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


def member_info(path: Path) -> ModelInfo | None:
    from modelpack.runtime import read_model_info

    return read_model_info(path)
