"""Package sizes per strategy, measured on artifacts the project builds.

The one typed-in size is the AlexNet baseline: 240 MB, the figure the SqueezeNet
paper gives for uncompressed 32-bit AlexNet (Iandola et al., "SqueezeNet:
AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
arXiv:1602.07360, Table 2). Every other size is the length of bytes built here,
and each :class:`PackageSize` says how it was made, so a report can tell what is
real and what is not.

Providers are pluggable (anything with ``sizes(strategies)``). The default,
:class:`ProjectArtifacts`, measures the project's own artifacts: the zoo's
SqueezeNet v1.0 lineage (``modelpack.lineage``: the real v1.0, its head
retrained by gradient descent, its int8 quantisation) encoded with
``modelpack.codecs`` as the registry encodes it (``server.encodings.CODECS``).
Each size is measured when first asked for and cached per input fingerprint,
because zstd -19 of 5 MB takes seconds.
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
from typing import Any, Protocol

log = logging.getLogger(__name__)

ALEXNET_BYTES = 240_000_000
ALEXNET_SOURCE = "typed-in: 240 MB, AlexNet fp32 per the SqueezeNet paper (Iandola et al. 2016, arXiv:1602.07360, Table 2)"

STRATEGY_LABELS: dict[str, str] = {
    "alexnet_fp32": "AlexNet fp32, full (240 MB baseline)",
    "squeezenet_fp32": "SqueezeNet v1.0 fp32 ONNX, full",
    "squeezenet_zstd": "SqueezeNet v1.0 ONNX, zstd -19",
    "squeezenet_deep_compression": "SqueezeNet v1.0, Deep Compression codec",
    "squeezenet_int8": "SqueezeNet v1.0 int8 (static QDQ), as the registry serves it",
    "squeezenet_delta": "SqueezeNet v1.0 -> head-retrained v1.1, tensor delta",
}
_PROVIDER_VERSION = "3"  # bump when the way sizes are made changes


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
            raise UnknownStrategyError(
                f"no size for strategies {missing}; have {sorted(self.table)}"
            )
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
            raise UnknownStrategyError(
                f"unknown strategies {unknown}; known: {sorted(STRATEGY_LABELS)}"
            )
        cache = (self.cache_dir or default_cache_dir()) / f"sizes-{_fingerprint()}.json"
        table: dict[str, PackageSize] = {}
        try:
            table = {k: PackageSize(**v) for k, v in json.loads(cache.read_text()).items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError) as e:
            log.warning("ignoring unreadable size cache %s: %s", cache, e)
        missing = [s for s in strategies if s not in table]
        if missing:
            log.info("measuring package sizes of %s", missing)
            lineage = _Lineage()
            for s in missing:
                table[s] = _MEASURES[s](lineage)
            _write_cache(cache, {k: dataclasses.asdict(v) for k, v in table.items()})
        return {s: table[s] for s in strategies}


def _fingerprint() -> str:
    from modelpack import deepcompression as dc
    from modelpack.lineage import LineageRecipe, lineage_cache

    h = hashlib.sha256(_PROVIDER_VERSION.encode())
    h.update(dc.SHIPPED_PATH.read_bytes())
    h.update(str(lineage_cache(LineageRecipe())).encode())
    h.update(",".join(_served_codecs()).encode())
    return h.hexdigest()[:16]


def _served_codecs() -> tuple[str, ...]:
    from server.encodings import CODECS

    return tuple(CODECS)


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sizes-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home must not stop a simulation
        log.warning("cannot cache package sizes in %s: %s", path, e)


class _Lineage:
    """The zoo's SqueezeNet v1.0 lineage (real v1.0, head retrain, int8), loaded on first use."""

    def __init__(self) -> None:
        self._paths: dict[str, Path] | None = None

    def __getitem__(self, member: str) -> bytes:
        if self._paths is None:
            from modelpack.lineage import build_lineage

            self._paths = build_lineage()
        return self._paths[member].read_bytes()


def _served(new: bytes, base: bytes | None) -> tuple[int, str]:
    """Length of what the registry would send: its smallest encoding (server.encodings), else the file."""
    from modelpack import codecs

    encs = [
        e
        for e in codecs.best_encoding(
            new, {"base": base} if base else None, verify=False, only=_served_codecs()
        )
        if (e.base_id is not None) == (base is not None)
    ]
    if not encs or encs[0].size >= len(new):
        return len(new), "the full file (no smaller encoding)"
    return encs[0].size, f"the registry's '{encs[0].codec}' encoding"


def _m_alexnet(lin: _Lineage) -> PackageSize:
    return PackageSize("alexnet_fp32", ALEXNET_BYTES, ALEXNET_SOURCE)


def _m_fp32(lin: _Lineage) -> PackageSize:
    return PackageSize(
        "squeezenet_fp32",
        len(lin["base"]),
        "real: ONNX of the zoo's SqueezeNet v1.0 (trained weights), full file",
    )


def _m_zstd(lin: _Lineage) -> PackageSize:
    from modelpack import codecs

    n = len(codecs.encode("full", lin["base"]))
    return PackageSize(
        "squeezenet_zstd",
        n,
        "real: modelpack.codecs 'full' (zstd -19, with its container header) of that ONNX",
    )


def _m_dc(lin: _Lineage) -> PackageSize:
    from modelpack import codecs

    n = len(codecs.encode("deepcompression", lin["base"]))
    return PackageSize(
        "squeezenet_deep_compression",
        n,
        "real: modelpack.codecs 'deepcompression' of that ONNX (what the registry serves a new vehicle)",
    )


def _m_int8(lin: _Lineage) -> PackageSize:
    n, how = _served(lin["int8"], None)
    return PackageSize(
        "squeezenet_int8",
        n,
        f"real: lineage member 'int8' (ORT static int8 QDQ of v1.0), stand-alone: {how}",
    )


def _m_delta(lin: _Lineage) -> PackageSize:
    n, how = _served(lin["head"], lin["base"])
    return PackageSize(
        "squeezenet_delta",
        n,
        f"real: lineage member 'head' (conv10 retrained by gradient descent) against v1.0: {how}",
    )


_MEASURES = {
    "alexnet_fp32": _m_alexnet,
    "squeezenet_fp32": _m_fp32,
    "squeezenet_zstd": _m_zstd,
    "squeezenet_deep_compression": _m_dc,
    "squeezenet_int8": _m_int8,
    "squeezenet_delta": _m_delta,
}
