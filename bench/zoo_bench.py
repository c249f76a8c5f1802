"""The model zoo next to the paper's figures: parameters, bytes, zstd bytes,
ONNX Runtime latency on this machine.

    nice python bench/zoo_bench.py            # full: zstd -19 on every file, 30 timed runs
    nice python bench/zoo_bench.py --quick    # smoke: zstd -3, 5 timed runs

Prints a markdown table and writes it (and JSON) to bench/out/. Every figure
in the table is measured in the run, except the "paper" column (Iandola et al.
2016, SqueezeDet: Wu et al. 2017), quoted for comparison.
"""

from __future__ import annotations

import argparse
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

from modelpack import deepcompression as dc
from modelpack import zoo
from modelpack.lineage import build_lineage
from modelpack.quantize import requantize_codebooks
from modelpack.runtime import make_session, read_model_info
from modelpack.selftest import selftest_input
from modelpack.zoo.graph import param_count

OUT = Path(__file__).parent / "out"
PAPER = {
    "alexnet": "240 MB",
    "squeezenet1.0": "4.8 MB",
    "squeezenet1.0 .net (8-bit DC)": "0.66 MB",
    "squeezenet1.0-cb6 .net (6-bit values)": "0.47 MB (6-bit packed)",
    "squeezenet1.1": "(2.4x less compute than 1.0)",
    "squeezedet": "7.9 MB",
}


def zstd_size(data: bytes, level: int) -> int:
    return len(zstandard.ZstdCompressor(level=level, threads=-1).compress(data))


def latency_ms(model: bytes, runs: int, threads: int) -> float:
    info = read_model_info(model)
    assert info is not None
    session = make_session(model, threads=threads)
    x = {info.input_name: selftest_input(info, 0)}
    for _ in range(3):
        session.run(None, x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def row(name: str, data: bytes, *, level: int, runs: int, trained: str, onnx_model: bool = True) -> dict:
    r: dict = {"model": name, "bytes": len(data), "zstd_bytes": zstd_size(data, level), "trained": trained,
               "paper": PAPER.get(name, "")}
    if onnx_model:
        r["params"] = param_count(onnx.load_model_from_string(data))
        r["ms_1thread"] = latency_ms(data, runs, 1)
        r["ms_2threads"] = latency_ms(data, runs, 2)
    print(f"measured {name}", file=sys.stderr)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="zstd level 3 and 5 timed runs (smoke test)")
    args = ap.parse_args()
    level, runs = (3, 5) if args.quick else (19, 30)
    rows = []
    alex = zoo.build_cached("alexnet").read_bytes()
    rows.append(row("alexnet", alex, level=level, runs=max(5, runs // 3), trained=zoo.MODELS["alexnet"].trained))
    del alex
    lineage = build_lineage()
    rows.append(row("squeezenet1.0", lineage["base"].read_bytes(), level=level, runs=runs, trained="yes"))
    net = dc.SHIPPED_PATH.read_bytes()
    r = row("squeezenet1.0 .net (8-bit DC)", net, level=level, runs=runs, trained="yes", onnx_model=False)
    t = time.perf_counter()
    for _ in range(5):
        zoo.squeezenet.build_from_tensors(dc.decode_tensors(dc.parse(net)))
    r["decode_to_onnx_ms"] = (time.perf_counter() - t) / 5 * 1000
    r["params"] = sum(t.weight.size + t.bias.size for t in dc.decode_tensors(dc.parse(net)))
    rows.append(r)
    cb6 = dc.encode_tensors(requantize_codebooks(dc.parse(net), 6))
    rows.append(row("squeezenet1.0-cb6 .net (6-bit values)", cb6, level=level, runs=runs,
                    trained="yes (re-clustered, no retraining)", onnx_model=False))
    rows[-1]["params"] = rows[-2]["params"]
    rows.append(row("squeezenet1.0-int8", lineage["int8"].read_bytes(), level=level, runs=runs,
                    trained="yes (quantized, no retraining)"))
    rows.append(row("squeezenet1.0-head", lineage["head"].read_bytes(), level=level, runs=runs,
                    trained="yes (conv10 retrained on 5 photos)"))
    for name in ("squeezenet1.1", "squeezedet"):
        rows.append(row(name, zoo.build(name), level=level, runs=runs, trained=zoo.MODELS[name].trained))

    def fmt(v: object, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        f"Zoo on {platform.machine()} ({platform.processor() or 'cpu'}), onnxruntime CPU, "
        f"zstd level {level}, median of {runs} runs (AlexNet {max(5, runs // 3)}), batch 1; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine: "
        "latencies move with the load).",
        "",
        "| model | params | bytes | MB | zstd bytes | ms/img 1 thread | ms/img 2 threads | trained | paper |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {fmt(r.get('params'), ',')} | {r['bytes']:,} | {r['bytes'] / 1e6:.2f} | "
            f"{r['zstd_bytes']:,} | {fmt(r.get('ms_1thread'), '.1f')} | {fmt(r.get('ms_2threads'), '.1f')} | "
            f"{r['trained']} | {r['paper']} |"
        )
    base = next(r for r in rows if r["model"] == "squeezenet1.0")
    alex = next(r for r in rows if r["model"] == "alexnet")
    lines += [
        "",
        f"Ratios (measured): AlexNet / SqueezeNet v1.0 ONNX bytes = {alex['bytes'] / base['bytes']:.1f}x; "
        f"AlexNet / Deep Compression .net = {alex['bytes'] / len(net):.0f}x; "
        f"SqueezeNet v1.0 ONNX / zstd = {base['bytes'] / base['zstd_bytes']:.2f}x; "
        f".net decode + ONNX build = {rows[2]['decode_to_onnx_ms']:.0f} ms.",
    ]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "zoo.md").write_text(text + "\n")
    (OUT / "zoo.json").write_text(json.dumps({"level": level, "runs": runs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
