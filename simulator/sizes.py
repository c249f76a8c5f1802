"""Package sizes per strategy, measured on artifacts the project builds.

The one typed-in size is the AlexNet baseline: 240 MB, the figure the SqueezeNet
paper gives for uncompressed 32-bit AlexNet (Iandola et al., "SqueezeNet:
AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
arXiv:1602.07360, Table 2). Every other size is the length of bytes built here,
and each :class:`PackageSize` says how it was made, so a report can tell what is
real and what is not.

Providers are pluggable (anything with ``sizes(strategies)``): the default,
:class:`ProjectArtifacts`, builds SqueezeNet v1.0 with ``modelpack.zoo`` from the
shipped trained weights and encodes it with ``modelpack.codecs`` when that
package is installed, else with ``zstandard`` directly (the same zstd the
registry's codecs wrap). Results are cached per input fingerprint because
zstd -19 of 5 MB takes seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

ALEXNET_BYTES = 240_000_000
ALEXNET_SOURCE = "typed-in: 240 MB, AlexNet fp32 per the SqueezeNet paper (Iandola et al. 2016, arXiv:1602.07360, Table 2)"

STRATEGY_LABELS: dict[str, str] = {
    "alexnet_fp32": "AlexNet fp32, full (240 MB baseline)",
    "squeezenet_fp32": "SqueezeNet v1.0 fp32 ONNX, full",
    "squeezenet_zstd": "SqueezeNet v1.0 ONNX, zstd -19",
    "squeezenet_deep_compression": "SqueezeNet v1.0, Deep Compression",
    "squeezenet_int8": "SqueezeNet v1.0 int8 (ORT dynamic quantisation), zstd -19",
    "squeezenet_delta": "SqueezeNet delta, retrained classifier vs v1.0",
}
_PROVIDER_VERSION = "2"  # bump when the way sizes are made changes


@dataclass(frozen=True)
class PackageSize:
    strategy: str
    nbytes: int
    source: str  # how this number was obtained: real artifact, codec, or typed-in


class SizeProvider(Protocol):
    def sizes(self, strategies: tuple[str, ...] | list[str]) -> dict[str, PackageSize]: ...


class UnknownStrategyError(KeyError):
    pass


@dataclass
class StaticSizes:
    """Sizes given by the caller (tests, what-if studies); labelled as given."""

    table: dict[str, int]
    label: str = "given by the caller"

    def sizes(self, strategies: tuple[str, ...] | list[str]) -> dict[str, PackageSize]:
        missing = [s for s in strategies if s not in self.table]
        if missing:
            raise UnknownStrategyError(f"no size for strategies {missing}; have {sorted(self.table)}")
        return {s: PackageSize(s, int(self.table[s]), self.label) for s in strategies}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "squeeze-ota" / "simulator"


@dataclass
class ProjectArtifacts:
    """Sizes of real encodings of the project's SqueezeNet v1.0 (cached)."""

    cache_dir: Path | None = None

    def sizes(self, strategies: tuple[str, ...] | list[str]) -> dict[str, PackageSize]:
        unknown = [s for s in strategies if s not in STRATEGY_LABELS]
        if unknown:
            raise UnknownStrategyError(f"unknown strategies {unknown}; known: {sorted(STRATEGY_LABELS)}")
        cache = (self.cache_dir or default_cache_dir()) / f"sizes-{_fingerprint()}.json"
        table: dict[str, PackageSize] = {}
        try:
            table = {k: PackageSize(**v) for k, v in json.loads(cache.read_text()).items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError) as e:
            log.warning("ignoring unreadable size cache %s: %s", cache, e)
        if not all(s in table for s in strategies):
            table = _measure()
            _write_cache(cache, {k: dataclasses.asdict(v) for k, v in table.items()})
        return {s: table[s] for s in strategies}


def _fingerprint() -> str:
    from modelpack import deepcompression as dc

    h = hashlib.sha256(_PROVIDER_VERSION.encode())
    h.update(dc.SHIPPED_PATH.read_bytes())
    h.update(b"codecs" if _codecs() is not None else b"zstandard")
    return h.hexdigest()[:16]


def _codecs():  # type: ignore[no-untyped-def]
    try:
        from modelpack import codecs

        return codecs
    except ImportError:
        return None


def _write_cache(path: Path, data: dict) -> None:  # type: ignore[type-arg]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sizes-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home must not stop a simulation
        log.warning("cannot cache package sizes in %s: %s", path, e)


def retrained_classifier(seed: int = 1, rel: float = 0.02) -> bytes:
    """A plausible next version: SqueezeNet v1.0 with its classifier (conv10) fine-tuned.

    Synthetic lineage (the project has no second trained release): conv10's
    shared weight values (its Deep Compression codebook) and biases move by a
    seeded ~2% each, as a fine-tune of the last layer with weight sharing kept
    would. Every other layer is byte-identical. Labelled as such in reports.
    """
    from modelpack import deepcompression as dc
    from modelpack.zoo.squeezenet import build_from_tensors

    rng = np.random.default_rng(seed)
    tensors = []
    for t in dc.load_shipped_tensors():
        if t.name == "conv10":
            values, inverse = np.unique(t.weight, return_inverse=True)
            factor = (1 + rel * rng.standard_normal(values.shape)).astype(np.float32)
            factor[values == 0] = 1  # pruned weights stay pruned
            weight = (values * factor)[inverse].reshape(t.weight.shape).astype(np.float32)
            bias = (t.bias * (1 + rel * rng.standard_normal(t.bias.shape))).astype(np.float32)
            t = dataclasses.replace(t, weight=weight, bias=bias)
        tensors.append(t)
    return build_from_tensors(tensors)


def _measure() -> dict[str, PackageSize]:
    import zstandard

    from modelpack import deepcompression as dc
    from modelpack import zoo

    log.info("measuring package sizes (zoo build, zstd -19, int8 quantisation, delta)")
    v10 = zoo.build("squeezenet1.0")
    v11 = retrained_classifier()
    zc = zstandard.ZstdCompressor(level=19)
    out = {
        "alexnet_fp32": PackageSize("alexnet_fp32", ALEXNET_BYTES, ALEXNET_SOURCE),
        "squeezenet_fp32": PackageSize(
            "squeezenet_fp32", len(v10), "real: ONNX from modelpack.zoo.build('squeezenet1.0'), trained weights"
        ),
        "squeezenet_zstd": PackageSize(
            "squeezenet_zstd", len(zc.compress(v10)), "real: zstandard level 19 of that ONNX"
        ),
        "squeezenet_deep_compression": PackageSize(
            "squeezenet_deep_compression",
            dc.SHIPPED_PATH.stat().st_size,
            "real: the released Deep Compression .net file (pruned, 8-bit shared weights)",
        ),
        "squeezenet_int8": PackageSize("squeezenet_int8", len(zc.compress(_int8(v10))), "real: onnxruntime quantize_dynamic (int8 weights) of that ONNX, zstd -19"),
    }
    delta, how = _delta(v11, v10)
    out["squeezenet_delta"] = PackageSize(
        "squeezenet_delta", delta, f"real bytes, synthetic lineage: {how} of a conv10-retrained v1.0 against v1.0"
    )
    return out


def _delta(new: bytes, base: bytes) -> tuple[int, str]:
    codecs = _codecs()
    if codecs is not None:
        try:
            encs = [e for e in codecs.best_encoding(new, {"v1.0": base}) if getattr(e, "base", None)]
            if encs:
                best = min(encs, key=lambda e: e.size)
                return best.size, f"modelpack.codecs '{getattr(best, 'codec', '?')}'"
        except Exception as e:  # noqa: BLE001 - the codecs API is young; fall back and say so
            log.warning("modelpack.codecs delta failed (%s); using zstd --patch-from", e)
    import zstandard

    d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return len(zstandard.ZstdCompressor(level=19, dict_data=d).compress(new)), "zstd -19 --patch-from (zstandard)"


def _int8(model: bytes) -> bytes:
    import logging as _logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = _logging.getLogger()
    level = root.level
    root.setLevel(_logging.ERROR)  # quantize_dynamic warns about pre-processing on the root logger
    try:
        with tempfile.TemporaryDirectory() as d:
            src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
            src.write_bytes(model)
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            return dst.read_bytes()
    finally:
        root.setLevel(level)
