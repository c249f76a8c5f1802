"""The lean agent install (`squeeze-ota[agent]`) next to the full one (`[all]`).

Both are built here as fresh, non-editable virtual environments under
``$TMPDIR/ota-install-bench/`` (reused on the next run; ``--rebuild`` makes them again)
from this checkout, with the same pip configuration. For each:

* size on disk: the venv's ``lib/`` (installed packages), and how many distributions;
* import time: ``python -c 'import vehicle_agent.agent, vehicle_agent.serving,
  vehicle_agent.cli'`` from outside the checkout, wall and CPU, median of ``--repeat``
  runs, minus an empty interpreter's start;
* idle RSS: the real ``ota agent run`` of that venv, serving SqueezeNet 1.0 from a
  registry of this checkout, after it confirmed the model and sat idle ``--idle`` s
  (VmRSS, and VmHWM: the peak since start). Whether ``onnx`` got imported is printed.

``before`` is the plain install of the commit before the split, for comparison.

    python bench/agent_install_bench.py [--repeat 7] [--idle 5] [--rebuild] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_common import REPO, publish, sample, start_agent, start_registry, stop, wait_served

from modelpack import zoo

OUT = REPO / "bench" / "out"
# The venvs live outside the checkout: tests/test_architecture.py scans bench/ for our modules.
VENVS = Path(tempfile.gettempdir()) / "ota-install-bench"
# name -> (git ref, extra): the lean agent, everything, and the plain install before the
# split (a3de30d^: onnx, matplotlib, prometheus-client, grpcio-health-checking in the base,
# onnx imported on the agent's path).
BEFORE = "b797be5"
FLAVOURS = {"lean": ("HEAD", "agent"), "full": ("HEAD", "all"), "before": (BEFORE, "")}
IMPORT = "import vehicle_agent.agent, vehicle_agent.serving, vehicle_agent.cli"


def build(flavour: str, rebuild: bool) -> Path:
    venv = VENVS / flavour
    if rebuild:
        shutil.rmtree(venv, ignore_errors=True)
    if not (venv / ".built").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        with (
            tempfile.TemporaryDirectory() as src
        ):  # a clean copy: no build/ or egg-info of the dev install
            ref, extra = FLAVOURS[flavour]
            subprocess.run(
                ["git", "-C", str(REPO), "archive", "--format=tar", "-o", f"{src}/src.tar", ref],
                check=True,
            )
            subprocess.run(["tar", "-xf", f"{src}/src.tar", "-C", src], check=True)
            subprocess.run(
                [
                    str(venv / "bin/python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"{src}[{extra}]" if extra else src,
                ],
                check=True,
            )
        (venv / ".built").touch()
    return venv


def du(path: Path) -> int:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def timed(python: Path, code: str, cwd: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([str(python), "-c", code], check=True, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_times(pythons: dict[str, Path], repeat: int, cwd: Path) -> dict[str, dict]:
    """Round robin over the installs (the machine is shared: each round sees the same load)."""
    runs: dict[str, dict[str, list]] = {n: {"empty": [], "import": []} for n in pythons}
    for _ in range(repeat):
        for n, python in pythons.items():
            runs[n]["empty"].append(timed(python, "pass", cwd))
            runs[n]["import"].append(timed(python, IMPORT, cwd))
    out = {}
    for n, python in pythons.items():

        def med(key: str, i: int, r: dict = runs[n]) -> float:
            return statistics.median(x[i] for x in r[key])

        mods = subprocess.run(
            [str(python), "-c", f"{IMPORT}; import sys; print(' '.join(sorted(sys.modules)))"],
            check=True,
            cwd=cwd,
            capture_output=True,
            text=True,
        ).stdout.split()
        out[n] = {
            "wall_s": med("import", 0) - med("empty", 0),
            "cpu_s": med("import", 1) - med("empty", 1),
            "modules": len(mods),
            "imports_onnx": "onnx" in mods,
            "imports_matplotlib": "matplotlib" in mods,
        }
    return out


def idle_rss(venv: Path, idle_s: float, base: bytes) -> dict:
    with tempfile.TemporaryDirectory(prefix="ota-inst-", dir="/tmp") as tmp:
        work = Path(tmp)
        registry, address = start_registry(work)
        agent = None
        try:
            publish(address, base, "squeezenet1.0", "1.0.0")
            sock = work / "agent.sock"
            agent = start_agent(
                work,
                address,
                sock,
                interval=3600,
                health_window=0,
                ota=[str(venv / "bin/ota")],
                cwd=work,
            )
            wait_served(sock, "squeezenet1.0", "1.0.0", "confirmed")
            time.sleep(idle_s)
            s = sample(agent.pid)
            maps = Path(f"/proc/{agent.pid}/maps").read_text()
            return {
                "rss_mb": s.rss_mb,
                "hwm_mb": s.hwm_mb,
                "onnx_loaded": "/onnx/onnx_cpp2py_export" in maps,
            }
        finally:
            if agent is not None:
                stop(agent)
            stop(registry)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    base = zoo.build("squeezenet1.0")
    results = {}
    venvs = {flavour: build(flavour, args.rebuild) for flavour in FLAVOURS}
    with tempfile.TemporaryDirectory() as cwd:
        imports = import_times(
            {f: v / "bin/python" for f, v in venvs.items()}, args.repeat, Path(cwd)
        )
        for flavour, venv in venvs.items():
            dists = subprocess.run(
                [str(venv / "bin/python"), "-m", "pip", "list", "--format=json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            ref, extra = FLAVOURS[flavour]
            results[flavour] = {
                "what": f"`squeeze-ota[{extra}]`" if extra else f"`squeeze-ota` at {ref}",
                "lib_bytes": du(venv / "lib"),
                "distributions": len(json.loads(dists)),
                **imports[flavour],
                **idle_rss(venv, args.idle, base),
            }
    lean, full = results["lean"], results["before"]
    lines = [
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine); "
        f"import times are medians of {args.repeat}; idle RSS after {args.idle:.0f} s serving SqueezeNet 1.0",
        "",
        "| install | distributions | size on disk | import wall | import CPU | modules | onnx imported | "
        "idle RSS | peak RSS |",
        "|---|---:|---:|---:|---:|---:|:-:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {r['what']} ({name}) | {r['distributions']} | {r['lib_bytes'] / 2**20:.0f} MiB | "
            f"{r['wall_s']:.2f} s | {r['cpu_s']:.2f} s | {r['modules']} | "
            f"{'yes' if r['imports_onnx'] or r['onnx_loaded'] else 'no'} | {r['rss_mb']:.0f} MB | "
            f"{r['hwm_mb']:.0f} MB |"
        )
    lines.append(
        f"| lean / before | {lean['distributions'] / full['distributions']:.2f} | "
        f"{lean['lib_bytes'] / full['lib_bytes']:.2f} | {lean['wall_s'] / full['wall_s']:.2f} | "
        f"{lean['cpu_s'] / full['cpu_s']:.2f} | | | {lean['rss_mb'] / full['rss_mb']:.2f} | "
        f"{lean['hwm_mb'] / full['hwm_mb']:.2f} |"
    )
    text = "\n".join(lines)
    print(text)
    (OUT / "agent_install.json").write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
