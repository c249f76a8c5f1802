"""The model zoo next to the paper's figures: parameters, bytes, zstd bytes,
ONNX Runtime latency on this machine.

    nice python bench/zoo_bench.py            # full: zstd -19 on every file, 30 timed rounds
    nice python bench/zoo_bench.py --quick    # smoke: zstd -3, 5 timed rounds

Latency is measured in interleaved rounds (each round runs every model once),
so load from other processes on this shared machine hits all models alike; the
table gives each model's median and its ratio to SqueezeNet v1.0's. Prints a
markdown table and writes it (and JSON) to bench/out/. Every figure in the
table is measured in the run, except the "paper" column (Iandola et al. 2016;
SqueezeDet: Wu et al. 2017), quoted for comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import zstandard

from modelpack import codecs, fidelity, zoo
from modelpack import deepcompression as dc
from modelpack.lineage import build_lineage
from modelpack.quantize import requantize_codebooks
from modelpack.runtime import make_session, read_model_info
from modelpack.selftest import selftest_input
from modelpack.zoo.graph import param_count
from modelpack.zoo.squeezenet import build_from_tensors

OUT = Path(__file__).parent / "out"
PAPER = {
    "alexnet": "240 MB",
    "squeezenet1.0": "4.8 MB",
    "squeezenet1.0 .net (8-bit DC)": "0.66 MB",
    "squeezenet1.0-cb6 .net6 (6-bit packed)": "0.47 MB (6-bit packed)",
    "squeezenet1.1": "(2.4x less compute than 1.0)",
    "squeezedet": "7.9 MB",
}


def zstd_size(data: bytes, level: int) -> int:
    return len(zstandard.ZstdCompressor(level=level, threads=-1).compress(data))


def interleaved_latency_ms(models: dict[str, bytes], runs: int) -> dict[str, float]:
    """Median ms per image of each model, one thread, batch 1, round-robin."""
    sessions = {}
    for name, data in models.items():
        info = read_model_info(data)
        assert info is not None
        session = make_session(data, threads=1)
        feed = {info.input_name: selftest_input(info, 0)}
        for _ in range(3):  # warm-up
            session.run(None, feed)
        sessions[name] = (session, feed)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, (session, feed) in sessions.items():
            t = time.perf_counter()
            session.run(None, feed)
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="zstd level 3 and 5 timed rounds (smoke test)"
    )
    args = ap.parse_args()
    level, runs = (3, 5) if args.quick else (19, 30)
    load_start = os.getloadavg()[0]
    lineage = build_lineage()
    net = dc.SHIPPED_PATH.read_bytes()
    onnx_models = {
        "alexnet": (zoo.build_cached("alexnet").read_bytes(), zoo.MODELS["alexnet"].trained),
        "squeezenet1.0": (lineage["base"].read_bytes(), "yes"),
        "squeezenet1.0-int8": (lineage["int8"].read_bytes(), "yes (quantized, no retraining)"),
        "squeezenet1.0-head": (lineage["head"].read_bytes(), "yes (conv10 retrained on 5 photos)"),
        "squeezenet1.1": (zoo.build("squeezenet1.1"), zoo.MODELS["squeezenet1.1"].trained),
        "squeezedet": (zoo.build("squeezedet"), zoo.MODELS["squeezedet"].trained),
    }
    rows: dict[str, dict] = {}
    for name, (data, trained) in onnx_models.items():
        rows[name] = {
            "model": name,
            "params": param_count(onnx.load_model_from_string(data)),
            "bytes": len(data),
            "zstd_bytes": zstd_size(data, level),
            "trained": trained,
            "paper": PAPER.get(name, ""),
        }
        print(f"sized {name}", file=sys.stderr)
    n_params = sum(t.weight.size + t.bias.size for t in dc.decode_tensors(dc.parse(net)))
    t = time.perf_counter()
    for _ in range(5):
        build_from_tensors(dc.decode_tensors(dc.parse(net)))
    decode_ms = (time.perf_counter() - t) / 5 * 1000
    six = requantize_codebooks(dc.parse(net), 6)
    cb6 = dc.encode_tensors(six)
    net6 = dc.encode6(dc.layers_from_tensors(six))
    # The 6-bit version as the registry signs and sends it: the lineage's cb6
    # member (the same weights as the packed file, with its model info), its
    # first-install encoding, and its fidelity against v1.0.
    onnx6 = lineage["cb6"].read_bytes()
    unpacked = dc.decode_tensors(dc.parse6(net6))
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(unpacked, six, strict=False)), (
        "6-bit file is not the cb6 weights"
    )
    wire6 = len(codecs.encode("deepcompression", onnx6))
    fid6 = fidelity.compare(lineage["base"].read_bytes(), onnx6, n=200)
    for name, data, trained in (
        ("squeezenet1.0 .net (8-bit DC)", net, "yes"),
        ("squeezenet1.0-cb6 .net (6-bit values)", cb6, "yes (re-clustered, no retraining)"),
        ("squeezenet1.0-cb6 .net6 (6-bit packed)", net6, "yes (re-clustered, no retraining)"),
    ):
        rows[name] = {
            "model": name,
            "params": n_params,
            "bytes": len(data),
            "zstd_bytes": zstd_size(data, level),
            "trained": trained,
            "paper": PAPER.get(name, ""),
        }
    load_before_timing = os.getloadavg()[0]
    lat = interleaved_latency_ms({name: data for name, (data, _) in onnx_models.items()}, runs)
    load_end = os.getloadavg()[0]
    for name, ms in lat.items():
        rows[name]["ms"] = ms
        rows[name]["vs_v10"] = ms / lat["squeezenet1.0"]
    order = [
        "alexnet",
        "squeezenet1.0",
        "squeezenet1.0 .net (8-bit DC)",
        "squeezenet1.0-cb6 .net (6-bit values)",
        "squeezenet1.0-cb6 .net6 (6-bit packed)",
        "squeezenet1.0-int8",
        "squeezenet1.0-head",
        "squeezenet1.1",
        "squeezedet",
    ]

    def fmt(v: object, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        f"Zoo on {platform.machine()}, {os.cpu_count()} cores shared with other work (load average "
        f"{load_start:.1f} at the start, {load_before_timing:.1f} before timing, {load_end:.1f} at the end); "
        f"onnxruntime CPU, 1 thread, batch 1, median of {runs} interleaved rounds; zstd level {level}.",
        "",
        "| model | params | bytes | MB | zstd bytes | ms/img | time vs v1.0 | trained | paper |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name in order:
        r = rows[name]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['bytes']:,} | {r['bytes'] / 1e6:.2f} | {r['zstd_bytes']:,} | "
            f"{fmt(r.get('ms'), '.1f')} | {fmt(r.get('vs_v10'), '.2f')} | {r['trained']} | {r['paper']} |"
        )
    base, alex = rows["squeezenet1.0"], rows["alexnet"]
    lines += [
        "",
        f"Ratios (measured): AlexNet / SqueezeNet v1.0 ONNX bytes = {alex['bytes'] / base['bytes']:.1f}x; "
        f"AlexNet / Deep Compression .net = {alex['bytes'] / len(net):.0f}x; "
        f"SqueezeNet v1.0 ONNX / its zstd = {base['bytes'] / base['zstd_bytes']:.2f}x; "
        f".net decode + ONNX build = {decode_ms:.0f} ms.",
        "",
        f"6-bit version (lineage cb6, the weights of the .net6 file): ONNX {len(onnx6):,} B, sha256 "
        f"{hashlib.sha256(onnx6).hexdigest()}; first install on the wire {wire6:,} B (deepcompression "
        f"encoding, rebuilds it byte for byte); fidelity against v1.0 on {fid6.n_inputs} views: top-1 "
        f"agreement {fid6.top1_agreement:.1%}, top-5 {fid6.top5_agreement:.1%}, mean |diff| {fid6.mean_abs_diff:.5f}.",
    ]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "zoo.md").write_text(text + "\n")
    (OUT / "zoo.json").write_text(
        json.dumps(
            {
                "level": level,
                "runs": runs,
                "rows": list(rows.values()),
                "load": [load_start, load_before_timing, load_end],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
