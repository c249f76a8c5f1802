"""Transfer benchmark: bytes on the wire for model updates, ours vs peers.

Runs, on the same inputs in one run: full fp32, zstd -19, the Deep
Compression release file (first install), zstd -19 --long=27 --patch-from,
bsdiff, xdelta3 -9, ZipNN (byte mode; XOR delta mode where the two files have
equal length), and each codec of ``modelpack.codecs``. Reports size, ratio to
an AlexNet-sized (240 MB) full download, encode and decode time (medians),
peak memory of decode (max RSS growth of a fresh process), the winner per
row, and for dense-change rows an estimate of the information in the change.

    python bench/transfer_bench.py [--repeat 3] [--markdown docs/transfer.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_pairs import Pair, all_pairs

from modelpack import codecs
from modelpack.codecs.onnxwire import find_tensors

ALEXNET_BYTES = 240_000_000
RELEASE_FILE = (
    Path(__file__).resolve().parents[1]
    / "modelpack"
    / "data"
    / "squeezenet_v1.0_deep_compression.net"
)
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    method: str
    size: int | None
    enc_s: float | None = None
    dec_s: float | None = None
    dec_peak_mb: float | None = None
    note: str = ""
    ours: bool = False
    lossless: bool = True


@dataclass
class Row:
    pair: Pair
    results: list[Result] = field(default_factory=list)
    ort_load_s: float | None = None
    bound: int | None = None


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _run(cmd: list[str]) -> tuple[float, float | None]:
    """Run a command; return (seconds, peak RSS in MB of that process).

    The peak comes from GNU time run around the tool: a child's
    ``ru_maxrss`` as seen by this (large) Python process would include this
    process's own footprint, which Linux carries across fork and exec."""
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    full = [timer, "-f", "MAXRSS_KB %M", *cmd] if timer else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-300:]}")
    peak = None
    for line in proc.stderr.splitlines():
        if line.startswith("MAXRSS_KB "):
            peak = int(line.split()[1]) / 1024
    return dt, peak


def cli_peer(
    name: str,
    tool: str,
    enc: Callable[[Path, Path, Path], list[str]],
    dec: Callable[[Path, Path, Path], list[str]],
    needs_base: bool,
) -> Callable[[Pair, Path, int], Result]:
    def run(pair: Pair, work: Path, repeat: int) -> Result:
        if shutil.which(tool) is None:
            return Result(name, None, note=f"{tool} not installed")
        if needs_base and pair.base is None:
            return Result(name, None, note="no base")
        old, new, patch, out = (
            work / "old",
            work / "new",
            work / f"{tool}.patch",
            work / f"{tool}.out",
        )
        old.write_bytes(pair.base or b"")
        new.write_bytes(pair.new)
        enc_t, dec_t, peaks = [], [], []
        for _ in range(repeat):
            patch.unlink(missing_ok=True)
            enc_t.append(_run(enc(old, new, patch))[0])
            out.unlink(missing_ok=True)
            dt, peak = _run(dec(old, patch, out))
            dec_t.append(dt)
            if peak is not None:
                peaks.append(peak)
        ok = out.read_bytes() == pair.new
        return Result(
            name,
            patch.stat().st_size,
            _median(enc_t),
            _median(dec_t),
            max(peaks) if peaks else None,
            "" if ok else "MISMATCH",
            lossless=ok,
        )

    return run


PEERS = [
    cli_peer(
        "zstd -19",
        "zstd",
        lambda o, n, p: ["zstd", "-19", "-q", "-f", str(n), "-o", str(p)],
        lambda o, p, x: ["zstd", "-d", "-q", "-f", str(p), "-o", str(x)],
        False,
    ),
    cli_peer(
        "zstd -19 --long=27 --patch-from",
        "zstd",
        lambda o, n, p: [
            "zstd",
            "-19",
            "--long=27",
            "-q",
            "-f",
            f"--patch-from={o}",
            str(n),
            "-o",
            str(p),
        ],
        lambda o, p, x: [
            "zstd",
            "-d",
            "--long=27",
            "-q",
            "-f",
            f"--patch-from={o}",
            str(p),
            "-o",
            str(x),
        ],
        True,
    ),
    cli_peer(
        "bsdiff",
        "bsdiff",
        lambda o, n, p: ["bsdiff", str(o), str(n), str(p)],
        lambda o, p, x: ["bspatch", str(o), str(x), str(p)],
        True,
    ),
    cli_peer(
        "xdelta3 -9",
        "xdelta3",
        lambda o, n, p: ["xdelta3", "-9", "-e", "-f", "-s", str(o), str(n), str(p)],
        lambda o, p, x: ["xdelta3", "-d", "-f", "-s", str(o), str(p), str(x)],
        True,
    ),
]

_ZIPNN_SCRIPT = r"""
import json, sys, time
def hwm():  # this process's own peak RSS in kB (fresh at exec, unlike ru_maxrss)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
import zipnn
new = open(sys.argv[1], "rb").read()
base = open(sys.argv[2], "rb").read() if sys.argv[2] != "-" else None
kw = dict(input_format="byte", bytearray_dtype="float32")
if base is not None:
    kw["delta_compressed_type"] = "byte"
enc, dec = [], []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); c = zipnn.ZipNN(**kw).compress(new, delta_second_data=base) if base is not None else zipnn.ZipNN(**kw).compress(new); enc.append(time.perf_counter() - t)
    rss0 = hwm()
    t = time.perf_counter(); d = bytes(zipnn.ZipNN(**kw).decompress(c)); dec.append(time.perf_counter() - t)
if base is not None:
    d = bytes(a ^ b for a, b in zip(d, base)) if len(d) < 100 else (  # XOR delta back onto the base
        __import__("numpy").bitwise_xor(__import__("numpy").frombuffer(d, "u1"), __import__("numpy").frombuffer(base, "u1")).tobytes())
print(json.dumps({"size": len(c), "enc": sorted(enc)[len(enc)//2], "dec": sorted(dec)[len(dec)//2],
                  "ok": d == new, "peak_mb": (hwm() - rss0) / 1024}))
"""


def zipnn_peer(pair: Pair, work: Path, repeat: int) -> list[Result]:
    try:
        import zipnn  # noqa: F401  (only: is it installed?)
    except ImportError:
        return [Result("ZipNN", None, note="zipnn not installed (make bench-transfer installs it)")]
    (work / "new").write_bytes(pair.new)
    jobs = [("ZipNN", "-")]
    if pair.base is not None:
        if len(pair.base) == len(pair.new):
            (work / "old").write_bytes(pair.base)
            jobs.append(("ZipNN delta (XOR)", str(work / "old")))
    out = []
    for name, base in jobs:
        proc = subprocess.run(
            [sys.executable, "-c", _ZIPNN_SCRIPT, str(work / "new"), base, str(repeat)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            out.append(
                Result(name, None, note=f"failed: {proc.stderr.strip().splitlines()[-1][:80]}")
            )
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        note = "" if r["ok"] else "decompress did NOT reproduce the input"
        out.append(
            Result(name, r["size"], r["enc"], r["dec"], r["peak_mb"], note, lossless=r["ok"])
        )
    if pair.base is not None and len(pair.base) != len(pair.new):
        out.append(Result("ZipNN delta (XOR)", None, note="n/a: needs equal-length files"))
    return out


_OURS_DECODE = r"""
import sys
import numpy, zstandard
from modelpack import codecs
def hwm():  # this process's own peak RSS in kB (fresh at exec, unlike ru_maxrss)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
blob = open(sys.argv[1], "rb").read()
base = open(sys.argv[2], "rb").read() if sys.argv[2] != "-" else None
rss0 = hwm()  # after imports, with the inputs in memory
out = codecs.decode(blob, base)
print((hwm() - rss0) / 1024)
"""


def ours(pair: Pair, work: Path, repeat: int) -> list[Result]:
    jobs = [("full", None), ("deepcompression", None)]
    if pair.base is not None:
        jobs = [("bytedelta", pair.base), ("tensordelta", pair.base), *jobs]
    out = []
    for codec, base in jobs:
        enc_t, dec_t = [], []
        blob = b""
        for _ in range(repeat):
            t0 = time.perf_counter()
            blob = codecs.encode(codec, pair.new, base)
            enc_t.append(time.perf_counter() - t0)
        ok = True
        for _ in range(max(3, repeat)):
            t0 = time.perf_counter()
            ok = ok and codecs.decode(blob, base) == pair.new
            dec_t.append(time.perf_counter() - t0)
        (work / "blob").write_bytes(blob)
        (work / "base").write_bytes(base or b"")
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _OURS_DECODE,
                str(work / "blob"),
                str(work / "base") if base is not None else "-",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        peak = float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        out.append(
            Result(
                f"ours: {codec}",
                len(blob),
                _median(enc_t),
                _median(dec_t),
                peak,
                "" if ok else "MISMATCH",
                ours=True,
                lossless=ok,
            )
        )
    return out


def _entropy_bits(x: np.ndarray) -> float:
    if x.size == 0:
        return 0.0
    _, c = np.unique(x, return_counts=True)
    return float(-(c * np.log2(c / c.sum())).sum())


def information_bound(pair: Pair) -> int | None:
    """Estimated information in a dense change, in bytes.

    Per float32 tensor matched by name: which weights changed, given which were
    zero in the base (empirical conditional entropy of the change flags), plus
    for the changed weights the empirical entropy of the zigzag difference of
    their bit patterns, estimated as the joint entropy of its high 16 bits plus
    the entropies of its two low bytes (a plug-in estimate of the full 32-bit
    symbol is biased low when nearly every value is distinct). Tensors not in
    the base are counted at their own order-0 byte entropy. The skeleton
    (graph, metadata) is not counted.
    """
    if pair.base is None:
        return None
    old = {s.name: s for s in find_tensors(pair.base)}
    bits = 0.0
    for s in find_tensors(pair.new):
        new_b = pair.new[s.offset : s.end]
        o = old.get(s.name)
        if o is None or o.length != s.length or s.elem_size != 4:
            bits += _entropy_bits(np.frombuffer(new_b, np.uint8))
            continue
        nw = np.frombuffer(new_b, "<u4").astype(np.int64)
        ow = np.frombuffer(pair.base[o.offset : o.end], "<u4").astype(np.int64)
        changed = nw != ow
        base_zero = ow == 0
        for ctx in (True, False):
            bits += _entropy_bits(changed[base_zero == ctx])
        d = (nw - ow)[changed]
        z = np.where(d >= 0, 2 * d, -2 * d - 1)
        bits += _entropy_bits(z >> 16) + _entropy_bits(z & 0xFF) + _entropy_bits((z >> 8) & 0xFF)
    return int(bits / 8)


def ort_load_samples(model: bytes, repeat: int) -> list[float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    times = []
    for _ in range(max(3, repeat)):
        t0 = time.perf_counter()
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        times.append(time.perf_counter() - t0)
    return times


def run_row(pair: Pair, repeat: int) -> Row:
    row = Row(pair)
    with tempfile.TemporaryDirectory(prefix="transfer-", dir=ROOT / "bench" / "out") as d:
        work = Path(d)
        row.results.append(Result("full fp32 (no compression)", len(pair.new)))
        if pair.base is None:
            row.results.append(
                Result(
                    "Deep Compression release file",
                    RELEASE_FILE.stat().st_size,
                    note="the .net weights only, not ONNX",
                )
            )
        for peer in PEERS:
            row.results.append(peer(pair, work, repeat))
        row.results.extend(zipnn_peer(pair, work, repeat))
        # The session loads are timed right before and after our decodes, so
        # both see the same load on this shared machine.
        loads = ort_load_samples(pair.new, repeat)
        row.results.extend(ours(pair, work, repeat))
        loads += ort_load_samples(pair.new, repeat)
    row.ort_load_s = _median(loads)
    if pair.kind in ("dense", "head"):
        row.bound = information_bound(pair)
    return row


def _fmt_size(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _ms(s: float | None) -> str:
    return "—" if s is None else f"{s * 1000:.0f}"


def _vs_ort(dec_s: float | None, ort_s: float | None) -> str:
    return "—" if dec_s is None or not ort_s else f"{dec_s / ort_s:.2f}×"


def best(results: list[Result], ours_side: bool) -> Result | None:
    cands = [
        r
        for r in results
        if r.size is not None
        and r.lossless
        and r.ours == ours_side
        and not r.method.startswith("full fp32")
        and "release" not in r.method
    ]
    return min(cands, key=lambda r: r.size or 0) if cands else None


def markdown(rows: list[Row], source: str, repeat: int) -> str:
    lines = [
        f"Pairs: {source}. Medians of {repeat} runs (decode: at least 3). Ratio: AlexNet-sized full download "
        f"(240 MB) / bytes sent. Peak: ours = growth of a fresh Python process's peak RSS (VmHWM) during one decode, after imports and with base and encoding already in memory; ZipNN the same; CLI peers = peak RSS of the whole tool process (GNU time %M; it also reads its inputs). Info bound: for dense changes only (see `information_bound`). Our decode is `codecs.decode` whole: header and payload CRC checks, the rebuild, and the sha256 check of the rebuilt bytes (the base is hashed only when that check fails, to name a wrong base; the agent's verify step hashes the result again).",
        "",
        "| update | full fp32 | best peer | bytes | ours | bytes | ×AlexNet (ours) | ours vs best peer | winner | info bound | ours / bound | decode ms (ours) | ORT load ms | decode / ORT load |",
        "|---|---:|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        p, o = best(row.results, False), best(row.results, True)
        if o is None:
            continue
        assert o.size is not None  # best() picks only results with a size
        vs = f"{p.size / o.size:.2f}× smaller" if p and p.size else "—"
        winner = "ours" if not p or (o.size or 0) < (p.size or 0) else p.method
        bound = f"{row.bound:,}" if row.bound else "—"
        ratio = f"{o.size / row.bound:.2f}" if row.bound else "—"
        lines.append(
            f"| {row.pair.name} ({row.pair.provenance}) | {len(row.pair.new):,} | {p.method if p else '—'} | {_fmt_size(p.size if p else None)} "
            f"| {o.method.removeprefix('ours: ')} | {o.size:,} | {ALEXNET_BYTES / (o.size or 1):,.0f}× | {vs} | {winner} | {bound} | {ratio} "
            f"| {_ms(o.dec_s)} | {_ms(row.ort_load_s)} | {_vs_ort(o.dec_s, row.ort_load_s)} |"
        )
    lines.append("")
    for row in rows:
        lines += [
            f"#### {row.pair.name} — {row.pair.provenance}",
            "",
            f"ONNX Runtime session load of this model (same run): {_ms(row.ort_load_s)} ms.",
            "",
            "| method | bytes | ×AlexNet | encode ms | decode ms | decode / ORT load | decode peak MB | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in row.results:
            ratio = f"{ALEXNET_BYTES / r.size:,.0f}×" if r.size else "—"
            peak = f"{r.dec_peak_mb:.1f}" if r.dec_peak_mb is not None else "—"
            lines.append(
                f"| {r.method} | {_fmt_size(r.size)} | {ratio} | {_ms(r.enc_s)} | {_ms(r.dec_s)} "
                f"| {_vs_ort(r.dec_s, row.ort_load_s)} | {peak} | {r.note} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--only", default="", help="run only the pairs whose name contains this")
    args = ap.parse_args()
    repeat = 1 if args.quick else args.repeat
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    pairs, source = all_pairs(ROOT / "bench" / "out" / "lineage")
    rows = []
    for pair in pairs:
        if args.only and args.only not in pair.name:
            continue
        print(f"... {pair.name}", file=sys.stderr, flush=True)
        rows.append(run_row(pair, repeat))
    text = markdown(rows, source, repeat)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
