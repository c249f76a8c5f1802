"""Realistic successor versions of the real SqueezeNet v1.0, for the delta
benchmarks and the registry's lossy-version records.

Members (stable file names in the output folder):

* ``squeezenet1.0.onnx`` (``base``): the real released model.
* ``squeezenet1.0-head.onnx`` (``head``): conv10 retrained by gradient descent
  on features of the real backbone (``modelpack.retrain``).
* ``squeezenet1.0-int8.onnx`` (``int8``): ONNX Runtime static int8, QDQ.
* ``squeezenet1.0-cb6.onnx`` (``cb6``): 6-bit shared-weight codebooks.
* ``squeezenet1.0-finetune.onnx`` (``finetune``), only when asked for
  (``LineageRecipe(finetune=True)``, ``ota zoo lineage --finetune``): every
  layer updated by SGD with PyTorch (``modelpack.finetune``, the ``bench`` extra).

Each member's ModelInfo says how it was made (``provenance`` and
``extra["lineage"]``) and its measured fidelity against its parent
(``extra["fidelity"]``); ``lineage.json`` repeats both with the hashes.

The lineage is built once into the cache and reused while its recipe is
unchanged; ``build_lineage(out_dir)`` copies it to ``out_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from modelpack import deepcompression as dc
from modelpack.cache import cache_dir, write_atomically
from modelpack.fidelity import FidelityReport, agreement, model_outputs, views_for
from modelpack.quantize import CALIBRATION_SEED, quantize_int8, requantize_codebooks
from modelpack.retrain import retrain_head
from modelpack.runtime import set_model_info
from modelpack.zoo.squeezenet import build_from_tensors, finish, squeezenet_v10_graph, v10_info

log = logging.getLogger(__name__)

# Bump when how a member is made changes (the cache also checks the base model's bytes).
LINEAGE_VERSION = "2"
MANIFEST = "lineage.json"
FILES = {
    "base": "squeezenet1.0.onnx",
    "head": "squeezenet1.0-head.onnx",
    "int8": "squeezenet1.0-int8.onnx",
    "cb6": "squeezenet1.0-cb6.onnx",
}
FINETUNE_FILE = "squeezenet1.0-finetune.onnx"
SUGGESTED_VERSIONS = {
    "base": "1.0.0",
    "head": "1.1.0",
    "int8": "1.2.0",
    "cb6": "1.3.0",
    "finetune": "1.4.0",
}


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
    finetune: bool = False  # needs PyTorch (the bench extra)
    finetune_views: int = 24
    finetune_seed: int = 303
    finetune_steps: int = 4
    finetune_lr: float = 1e-4
    version: str = LINEAGE_VERSION

    def files(self) -> dict[str, str]:
        return {**FILES, "finetune": FINETUNE_FILE} if self.finetune else dict(FILES)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _member_ok(folder: Path, name: str, base_sha256: str) -> dict | None:
    """The cached member's record if the file is intact and was derived from
    these base bytes (a changed builder invalidates it), else None."""
    try:
        entry = json.loads((folder / f"{name}.json").read_text())
        if (
            entry["base_sha256"] != base_sha256
            or _sha((folder / name).read_bytes()) != entry["sha256"]
        ):
            return None
        return entry
    except (OSError, ValueError, KeyError):
        return None


class _Builder:
    """Builds members one by one, measuring each against the base's outputs."""

    def __init__(self, recipe: LineageRecipe) -> None:
        self.recipe = recipe
        self.base_info = v10_info()
        self.base_model = squeezenet_v10_graph(dc.load_shipped_tensors(), self.base_info)
        self.base_bytes, self.base_info = finish(self.base_model, self.base_info)
        self.views = views_for("classifier", recipe.fidelity_n, recipe.fidelity_seed)
        self._base_outs: list | None = None

    @property
    def base_outs(self) -> list:
        if self._base_outs is None:  # only when some member must actually be measured
            _, self._base_outs = model_outputs(self.base_bytes, self.views, threads=1)
        return self._base_outs

    def member(
        self, key: str, model: onnx.ModelProto, provenance: str, facts: dict
    ) -> tuple[bytes, FidelityReport]:
        info = dataclasses.replace(
            self.base_info,
            provenance=provenance,
            selftest=None,
            extra={
                "lineage": {
                    "member": key,
                    "parent": "base",
                    "parent_sha256": _sha(self.base_bytes),
                    **facts,
                }
            },
        )
        set_model_info(model, info)
        probe = model.SerializeToString()
        cand_info, outs = model_outputs(probe, self.views, threads=1)
        report = agreement(
            self.base_info, self.base_outs, cand_info, outs, seed=self.recipe.fidelity_seed
        )
        info = dataclasses.replace(info, extra={**info.extra, "fidelity": report.to_dict()})
        data, _ = finish(model, info)
        log.info(
            "lineage %s: %d bytes, top-1 agreement %.3f", key, len(data), report.top1_agreement or 0
        )
        return data, report

    def head(self) -> tuple[bytes, FidelityReport]:
        r = self.recipe
        res = retrain_head(
            self.base_bytes,
            n_views=r.head_views,
            seed=r.head_seed,
            steps=r.head_steps,
            lr=r.head_lr,
        )
        tensors = [
            dc.LayerTensors(t.name, res.weight, res.bias) if t.name == "conv10" else t
            for t in dc.load_shipped_tensors()
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
        facts = {
            "method": "head-retrain",
            "steps": r.head_steps,
            "lr": r.head_lr,
            "views": r.head_views,
            "seed": r.head_seed,
            "loss_first": res.losses[0],
            "loss_last": res.losses[-1],
            "labels": res.labels,
        }
        return self.member("head", model, provenance, facts)

    def int8(self) -> tuple[bytes, FidelityReport]:
        r = self.recipe
        model = quantize_int8(self.base_bytes, n_calibration=r.int8_calibration)
        provenance = (
            "Real SqueezeNet v1.0 quantized to int8 by onnxruntime.quantization.quantize_static (QDQ, per-channel "
            f"int8 weights, uint8 activations, MinMax calibration on {r.int8_calibration} seeded views, seed "
            f"{CALIBRATION_SEED}). No retraining."
        )
        facts = {
            "method": "int8-static-qdq",
            "calibration_views": r.int8_calibration,
            "calibration_seed": CALIBRATION_SEED,
        }
        return self.member("int8", model, provenance, facts)

    def codebook(self) -> tuple[bytes, FidelityReport]:
        bits = self.recipe.codebook_bits
        tensors = requantize_codebooks(dc.load_shipped(), bits)
        model = squeezenet_v10_graph(tensors, self.base_info)
        provenance = (
            f"Real SqueezeNet v1.0 with each layer's 8-bit codebook re-clustered to {bits} bits "
            f"({2**bits - 1} shared non-zero values + 0, weighted linear-init k-means; pruning kept). No retraining."
        )
        facts = {
            "method": f"codebook-{bits}bit",
            "bits": bits,
            "net_bytes": len(dc.encode_tensors(tensors)),
        }
        return self.member("cb6", model, provenance, facts)

    def finetune(self) -> tuple[bytes, FidelityReport]:
        from modelpack.finetune import finetune

        r = self.recipe
        res = finetune(
            self.base_bytes,
            dc.load_shipped_tensors(),
            n_views=r.finetune_views,
            seed=r.finetune_seed,
            steps=r.finetune_steps,
            lr=r.finetune_lr,
        )
        model = squeezenet_v10_graph(res.tensors, self.base_info)
        provenance = (
            f"Real SqueezeNet v1.0 fully fine-tuned: {r.finetune_steps} full-batch SGD steps (momentum 0.9, lr "
            f"{r.finetune_lr:g}, PyTorch CPU, pruning masks kept) on all 26 layers, cross-entropy on "
            f"{r.finetune_views} seeded views (seed {r.finetune_seed}) of the 5 shipped photos; labels {res.labels}. "
            f"Loss {res.losses[0]:.3f} -> {res.losses[-1]:.3f}. Every weight moves: a realistic worst case for deltas."
        )
        facts = {
            "method": "full-finetune-torch",
            "steps": r.finetune_steps,
            "lr": r.finetune_lr,
            "views": r.finetune_views,
            "seed": r.finetune_seed,
            "loss_first": res.losses[0],
            "loss_last": res.losses[-1],
            "labels": res.labels,
        }
        return self.member("finetune", model, provenance, facts)


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[None]:
    """One builder of ``folder`` at a time: a second process (a parallel test worker, another
    test run, a bench beside them) waits for the first and then finds the members built. A
    folder that cannot take the lock file (read-only) is read without it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".build.lock", "a")  # noqa: SIM115 (held until the members are in)
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure(folder: Path, recipe: LineageRecipe, keys: list[str], force: bool) -> dict[str, dict]:
    """Build (or reuse from the cache) the members ``keys``; their records."""
    with _building(folder):
        return _ensure_locked(folder, recipe, keys, force)


def _ensure_locked(
    folder: Path, recipe: LineageRecipe, keys: list[str], force: bool
) -> dict[str, dict]:
    files = recipe.files()
    base_bytes = build_from_tensors(dc.load_shipped_tensors())
    base_sha256 = _sha(base_bytes)
    builder: _Builder | None = None
    records: dict[str, dict] = {}
    for key in keys:
        entry = None if force else _member_ok(folder, files[key], base_sha256)
        if entry is None:
            if key == "base":
                data, report = base_bytes, None
            else:
                builder = builder or _Builder(recipe)
                data, report = {
                    "head": builder.head,
                    "int8": builder.int8,
                    "cb6": builder.codebook,
                    "finetune": builder.finetune,
                }[key]()
            entry = {
                "file": files[key],
                "sha256": _sha(data),
                "size": len(data),
                "parent": None if key == "base" else "base",
                "base_sha256": base_sha256,
                "suggested_version": SUGGESTED_VERSIONS[key],
                "fidelity_vs_parent": report.to_dict() if report else None,
            }
            write_atomically(folder / files[key], data)
            write_atomically(
                folder / f"{files[key]}.json", json.dumps(entry, sort_keys=True).encode()
            )
        records[key] = entry
    return records


def lineage_cache(recipe: LineageRecipe) -> Path:
    return (
        cache_dir()
        / "lineage"
        / f"v{recipe.version}-{_sha(json.dumps(asdict(recipe), sort_keys=True).encode())[:12]}"
    )


def build_lineage(
    out_dir: Path | str | None = None, *, recipe: LineageRecipe | None = None, force: bool = False
) -> dict[str, Path]:
    """The lineage's files by member key (``base``, ``head``, ``int8``, ``cb6``,
    and ``finetune`` if the recipe asks) plus ``manifest``; built into the
    cache on first use, then copied to ``out_dir``."""
    recipe = recipe or LineageRecipe()
    folder = lineage_cache(recipe)
    members = _ensure(folder, recipe, list(recipe.files()), force)
    manifest = json.dumps(
        {"recipe": asdict(recipe), "members": members}, indent=2, sort_keys=True
    ).encode()
    if not (folder / MANIFEST).is_file() or (folder / MANIFEST).read_bytes() != manifest:
        write_atomically(folder / MANIFEST, manifest)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if out.resolve() != folder.resolve():
            for name in (*recipe.files().values(), MANIFEST):
                shutil.copyfile(folder / name, out / name)
        folder = out
    paths = {key: folder / name for key, name in recipe.files().items()}
    paths["manifest"] = folder / MANIFEST
    return paths


def read_manifest(folder: Path | str) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


def demo_successor(base: bytes) -> tuple[bytes, str]:
    """The next version after the real SqueezeNet v1.0 for the demo: the
    lineage's head retrain (cached after its first build), and one honest line
    saying how it was made and how far it moved."""
    recipe = LineageRecipe()
    folder = lineage_cache(recipe)
    records = _ensure(
        folder, recipe, ["base", "head"], force=False
    )  # not the whole lineage: the demo waits
    if (folder / FILES["base"]).read_bytes() != base:
        raise ValueError(
            "demo_successor derives from SqueezeNet v1.0 as zoo.build('squeezenet1.0') makes it"
        )
    fid = records["head"]["fidelity_vs_parent"]
    how = (
        f"conv10 retrained by {recipe.head_steps} steps of real gradient descent (numpy) on {recipe.head_views} "
        f"views of the shipped photos; top-1 agreement with its parent {100 * fid['top1_agreement']:.0f}%, "
        f"top-5 {100 * fid['top5_agreement']:.0f}% on {fid['n_inputs']} views"
    )
    return (folder / FILES["head"]).read_bytes(), how
