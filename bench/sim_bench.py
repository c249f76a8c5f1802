"""Simulator benchmark: 1M-vehicle run time, the ready scenarios, the emulation check.

    python bench/sim_bench.py [--vehicles 1000000] [--repeats 3] [--agents 20] [--update-docs]

1. Run time of a 1,000,000-vehicle rollout (city_lte, all six strategies),
   median of ``--repeats`` runs, package sizes from the cache (measured once).
2. The peer: the same engine driven by a per-vehicle Python loop (one vehicle
   per call) on a smaller fleet, checked to give identical results; ratio.
3. The ready scenarios at their own fleet sizes: tables and plots.
4. What each modelled effect is worth (switched off one at a time), a campaign
   what-if with a bad hardware variant, and the sensitivity of city_lte to its
   main assumptions (``--sens-vehicles`` x ``--seeds``, 95% CIs).
5. The emulation check with ``--agents`` real agents, twice (the real-vs-real
   noise floor), where namespaces can be made (root); skipped with the reason
   otherwise. ``--only-emulation`` runs just that part and writes its own block.

Scratch goes to bench/out/sim/. With --update-docs the tables replace the
generated block of docs/simulator.md and the plots are copied to docs/img/.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from simulator.engine import transfer
from simulator.fleet import build_fleet
from simulator.report import strategy_table, write_report
from simulator.scenario import Scenario, load_scenario
from simulator.simulate import simulate
from simulator.sizes import ProjectArtifacts

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "sim"
DOCS = ROOT / "docs" / "simulator.md"
IMG = ROOT / "docs" / "img"
BEGIN, END = "<!-- bench-sim:begin -->", "<!-- bench-sim:end -->"


def bench_million(n: int, repeats: int) -> tuple[list[float], list[float], str]:
    sc = load_scenario("city_lte")
    sizes = ProjectArtifacts()
    sizes.sizes(sc.strategies)  # measured (or cached) before timing
    times, cpu = [], []
    for i in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        res = simulate(sc, n, sizes=sizes)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        print(
            f"  run {i + 1}: {n:,} vehicles x {len(sc.strategies)} strategies in {times[-1]:.2f} s ({cpu[-1]:.1f} CPU-s)",
            flush=True,
        )
    return times, cpu, strategy_table(res.summaries())


PEER_CODE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from simulator.scenario import load_scenario
from simulator.simulate import simulate
from simulator.sizes import StaticSizes
sc = load_scenario("city_lte")
sizes = StaticSizes({s: 536884 for s in sc.strategies})
c = time.process_time()
simulate(sc, int(sys.argv[2]), sizes=sizes)
print(time.process_time() - c)
"""


def bench_previous_engine(n: int) -> float | None:
    """CPU seconds of main's engine before the diurnal model and the couplings, same fleet size."""
    import io
    import subprocess
    import tarfile
    import tempfile

    tmp = tempfile.TemporaryDirectory(
        prefix="sim-previous-engine-"
    )  # outside the tree: not a package of ours
    src = Path(tmp.name)
    try:
        blob = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "8d96116~2", "simulator"],
            capture_output=True,
            check=True,
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    with tmp:
        tarfile.open(fileobj=io.BytesIO(blob)).extractall(src)
        out = subprocess.run(
            [sys.executable, "-c", PEER_CODE, str(src), str(n)],
            capture_output=True,
            text=True,
            cwd=src,
        )
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def bench_loop_peer(n: int) -> tuple[float, float]:
    """Vectorised transfer vs the same engine called once per vehicle (identical results)."""
    sc = load_scenario("rural_3g")
    fleet = build_fleet(sc, n)
    ids = np.arange(n)
    size = 5_003_973
    t = time.perf_counter()
    vec = transfer(fleet, ids, 0.0, size, sc.horizon_s)
    t_vec = time.perf_counter() - t
    t = time.perf_counter()
    loop_done = np.array(
        [transfer(fleet, ids[i : i + 1], 0.0, size, sc.horizon_s).done[0] for i in range(n)]
    )
    t_loop = time.perf_counter() - t
    np.testing.assert_array_equal(vec.done, loop_done)
    return t_vec, t_loop


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--vehicles", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-vehicles", type=int, default=5_000)
    ap.add_argument(
        "--agents", type=int, default=20, help="real agents for the emulation check (0: skip)"
    )
    ap.add_argument("--packages", default="served,full", help="emulation: which packages to check")
    ap.add_argument("--emulation-repeats", type=int, default=2)
    ap.add_argument("--sens-vehicles", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--only-emulation",
        action="store_true",
        help="just the emulation check (its own docs block)",
    )
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    md: list[str] = []
    if args.only_emulation:
        for package in args.packages.split(","):
            print(f"emulation check, {args.agents} real agents, {package} package")
            md += emulation_section(args.agents, package, args.update_docs, args.emulation_repeats)
        _write(md, args.update_docs, "emulation")
        return 0

    print(f"1. {args.vehicles:,}-vehicle rollout, city_lte, {args.repeats} runs")
    times, cpu, million_table = bench_million(args.vehicles, args.repeats)
    med = statistics.median(times)
    med_cpu = statistics.median(cpu)
    load = os.getloadavg()[0]
    prev = bench_previous_engine(args.vehicles)
    print(f"  previous engine (flat connectivity, no couplings): {prev} CPU-s", flush=True)
    md += [
        f"### Run time: {args.vehicles:,} vehicles",
        "",
        f"Load average when it ended: {load:.1f} on {os.cpu_count()} cores (the machine is shared; "
        "rerun `make bench-sim` on a quiet machine for clean figures).",
        "",
        f"`simulate()` of `city_lte` with {args.vehicles:,} vehicles and all six strategies (six campaigns "
        f"on the same fleet): **median {med_cpu:.1f} CPU-seconds** ({med_cpu / 6:.1f} per strategy) of "
        f"{len(times)} runs, {med:.1f} s of wall time on this shared machine (run under `nice`), package sizes from "
        "the cache. "
        + (
            f"The engine before the diurnal model and the couplings (the commit before them, same fleet, same "
            f"run): {prev:.1f} CPU-seconds, so the new effects cost {med_cpu / prev:.1f}x."
            if prev
            else ""
        ),
        "",
        million_table,
        "",
    ]

    print(f"2. peer: per-vehicle loop over the same engine, {args.peer_vehicles:,} vehicles")
    t_vec, t_loop = bench_loop_peer(args.peer_vehicles)
    ratio = t_loop / t_vec
    print(f"  vectorised {t_vec * 1000:.0f} ms, per-vehicle loop {t_loop:.2f} s: {ratio:,.0f}x")
    md += [
        "### Vectorised vs a per-vehicle loop (same engine, identical results)",
        "",
        "| fleet | vectorised | per-vehicle Python loop | ratio | loop extrapolated to 1M |",
        "|---|---|---|---|---|",
        f"| {args.peer_vehicles:,} vehicles, rural_3g, one 5 MB download | {t_vec * 1000:.0f} ms | {t_loop:.2f} s | "
        f"{ratio:,.0f}x | {t_loop / args.peer_vehicles * 1e6 / 60:.0f} min per strategy |",
        "",
        "The peer calls the same numpy engine once per vehicle, so it pays numpy's per-call overhead; "
        "a scalar pure-Python rewrite would do better than this loop. It shows what vectorising buys "
        "this engine, not the best possible loop.",
        "",
    ]

    print("3. ready scenarios")
    IMG.mkdir(parents=True, exist_ok=True)
    for name in ("city_lte", "rural_3g", "trucks_satellite"):
        sc = load_scenario(name)
        res = simulate(sc)
        out = OUT / name
        write_report(res, out)
        print(f"  {name}: {sc.vehicles:,} vehicles in {res.elapsed_s:.1f} s -> {out / 'report.md'}")
        md += [
            f"### {name}: {sc.vehicles:,} vehicles",
            "",
            sc.description,
            "",
            strategy_table(res.summaries()),
            "",
        ]
        for png in ("coverage", "bytes"):
            if args.update_docs:
                shutil.copyfile(out / f"{png}.png", IMG / f"sim_{name}_{png}.png")
            md.append(f"![{name} {png}](img/sim_{name}_{png}.png)")
        md.append("")

    print("3b. rural_3g with downloads that restart after a cut")
    sc = load_scenario("rural_3g")
    sc = sc.replace(
        campaign=dataclasses.replace(sc.campaign, resumable=False), name="rural_3g, not resumable"
    )
    res = simulate(sc)
    write_report(res, OUT / "rural_3g_not_resumable")
    md += [
        "### rural_3g when a cut restarts the download",
        "",
        "The same fleet and seed with `resumable = false` (a download that starts again after a "
        "cut, as the agent fetched encodings before it learnt to resume them): compare with the "
        "resumable table above.",
        "",
        strategy_table(res.summaries()),
        "",
    ]

    md += sources_section()
    print("4. effects, what-if, sensitivity")
    md += effects_section(args.sens_vehicles)
    md += what_if_section()
    md += sensitivity_section(args.sens_vehicles, args.seeds, args.update_docs)

    if args.agents > 0:
        for package in args.packages.split(","):
            print(f"5. emulation check, {args.agents} real agents, {package} package")
            md += emulation_section(args.agents, package, args.update_docs, args.emulation_repeats)
    _write(md, args.update_docs, "sim")
    return 0


def _write(md: list[str], update_docs: bool, block: str) -> None:
    text = "\n".join(md)
    (OUT / f"RESULTS-{block}.md").write_text(text + "\n")
    print(f"\nresults: {OUT / f'RESULTS-{block}.md'}")
    if update_docs:
        begin, end = f"<!-- bench-{block}:begin -->", f"<!-- bench-{block}:end -->"
        doc = DOCS.read_text()
        a, b = doc.index(begin) + len(begin), doc.index(end)
        DOCS.write_text(doc[:a] + "\n" + text + "\n" + doc[b:])
        print(f"updated {DOCS} and {IMG}")


def sources_section() -> list[str]:
    """Every figure the ready scenarios use, its value and where it comes from."""
    from simulator.assumptions import needed_sources

    rows = ["| figure | value | source |", "|---|---|---|"]
    seen: set[str] = set()
    for name in ("city_lte", "rural_3g", "trucks_satellite"):
        sc = load_scenario(name)
        for key in needed_sources(sc):
            if key in seen:
                continue
            seen.add(key)
            kind, _, rest = key.partition(".")
            obj_name, _, fld = rest.rpartition(".")
            groups: dict[str, Mapping[str, object]] = {"links": sc.links, "patterns": sc.patterns}
            obj = (
                groups.get(kind, {}).get(obj_name) if kind in ("links", "patterns") else sc.campaign
            )
            value = getattr(obj, fld, "") if obj is not None else ""
            if isinstance(value, tuple) and len(value) > 4:
                value = f"{len(value)} hourly values"
            rows.append(f"| `{key}` | {value} | {sc.sources.get(key, '')} |")
    return [
        "### Sources of the ready scenarios' figures",
        "",
        "Generated from `simulator/assumptions.py` and the scenario files' `[sources]` tables "
        "(a test fails when a figure cites nothing and does not say it is a guess).",
        "",
        *rows,
        "",
    ]


EFFECTS = ("diurnal", "slow_start", "cell_sharing", "registry_limit")


def effects_section(n: int) -> list[str]:
    """city_lte with each effect switched off in turn (one seed; the sensitivity gives the spread)."""
    from simulator.campaign import run_campaign
    from simulator.report import fmt_hours
    from simulator.scenario import Model
    from simulator.simulate import QUANTILES, hours_to_share

    base = load_scenario("city_lte")
    base = base.replace(
        campaign=dataclasses.replace(base.campaign, max_concurrent=max(1, n // 500))
    )
    size = ProjectArtifacts().sizes(["alexnet_fp32", "squeezenet_deep_compression"])
    rows = [
        "| model | strategy | "
        + " | ".join(f"{int(q * 100)}% at" for q in QUANTILES)
        + " | cost (USD) |",
        "|---|---|" + "---|" * (len(QUANTILES) + 1),
    ]
    for off in (None, *EFFECTS):
        sc = (
            base
            if off is None
            else base.replace(model=dataclasses.replace(Model(), **{off: False}))
        )
        fleet = build_fleet(sc, n)
        for strat in ("squeezenet_deep_compression", "alexnet_fp32"):
            t = time.perf_counter()
            run = run_campaign(fleet, strat, size[strat].nbytes)
            label = "all effects" if off is None else f"without {off.replace('_', ' ')}"
            rows.append(
                f"| {label} | {strat} | "
                + " | ".join(fmt_hours(hours_to_share(run.success, n, q)) for q in QUANTILES)
                + f" | {run.cost.sum():,.0f} |"
            )
            print(f"  {label}, {strat}: {time.perf_counter() - t:.1f} s", flush=True)
    return [
        f"### What each effect is worth: city_lte, {n:,} vehicles, registry limit {base.campaign.max_concurrent} downloads at once",
        "",
        "Each effect switched off in turn (`[model]` in a scenario file), same fleet and seed. Simulated.",
        "",
        *rows,
        "",
    ]


def what_if_section() -> list[str]:
    """A bad hardware variant: when does the abort trip, and what did the rollout cost by then?"""
    sc = load_scenario("city_lte")
    bad = scenario_with_hardware(sc, 0.5)
    fine = scenario_with_hardware(sc, 0.002)
    out = [
        "### What-if: one hardware variant fails its installs",
        "",
        "city_lte with 15% of the fleet on hardware variant `b`; waves 1% / 10% / 50% / 100% with soak times "
        "2 h / 6 h / 12 h and advance shares 95% / 90% / 90%; abort at 5% failures among those targeted (at "
        "least 3). Simulated.",
        "",
    ]
    for label, scen in (
        ("variant b fails 50% of installs", bad),
        ("variant b as good as the rest (0.2%)", fine),
    ):
        res = simulate(
            scen.replace(strategies=("squeezenet_deep_compression", "alexnet_fp32")), 100_000
        )
        out += [f"**{label}**", "", strategy_table(res.summaries()), ""]
        for run in res.runs.values():
            if run.aborted_in_wave is not None:
                f = res.fleet
                by = np.bincount(f.hardware_idx[run.failed], minlength=2)
                out.append(
                    f"- {run.strategy}: abort trips in wave {run.aborted_in_wave + 1} at {run.abort_time / 3600:.1f} h, "
                    f"with {int(by[1])} of the {int(by.sum())} failures on variant b."
                )
        out.append("")
    return out


def scenario_with_hardware(sc: Scenario, bad_rate: float) -> Scenario:
    from simulator.scenario import Hardware

    camp = dataclasses.replace(
        sc.campaign, wave_soak_hours=(2.0, 6.0, 12.0, 0.0), wave_advance=(0.95, 0.9, 0.9, 0.9)
    )
    hw = (Hardware("a", 0.85, 0.002), Hardware("b", 0.15, bad_rate))
    return sc.replace(campaign=camp, hardware=hw, name=f"{sc.name}, variant b at {bad_rate:g}")


def sensitivity_section(n: int, seeds: int, update_docs: bool) -> list[str]:
    from simulator.sensitivity import DEFAULT_STRATEGY, run_sensitivity, write_sensitivity

    sc = load_scenario("city_lte")
    size = ProjectArtifacts().sizes([DEFAULT_STRATEGY])[DEFAULT_STRATEGY].nbytes
    t = time.perf_counter()
    res = run_sensitivity(sc, n, seeds, DEFAULT_STRATEGY, size)
    md, png = write_sensitivity(res, OUT)
    print(f"  sensitivity: {time.perf_counter() - t:.0f} s -> {md}", flush=True)
    if update_docs:
        shutil.copyfile(png, IMG / f"sim_{png.name}")
    return [md.read_text().replace(f"({png.name})", f"(img/sim_{png.name})"), ""]


def emulation_section(agents: int, package: str, update_docs: bool, repeats: int = 2) -> list[str]:
    from simulator.emulate.harness import emulate
    from simulator.emulate.netns import EmulationUnavailable, check_available
    from simulator.emulate.report import write_emulation_report

    title = {
        "served": "the registry's encoding, as served",
        "full": "the full file (encodings withdrawn)",
    }[package]
    try:
        check_available()
    except EmulationUnavailable as e:
        print(f"  skipped: {e}")
        return [f"### Emulation check: {title}", "", f"Not run on this machine: {e}.", ""]
    sc = load_scenario("emulation")
    start_load = os.getloadavg()[0]
    res = emulate(
        sc,
        agents,
        sc.horizon_s,
        package=package,
        echo=lambda m: print(f"  {m}", flush=True),
        repeats=repeats,
    )
    out = OUT / f"emulation-{package}-{agents}"
    path, s = write_emulation_report(res, out)
    load = os.getloadavg()[0]
    print(
        f"  {s.passing}/{s.vehicles} pass ({s.flips} flips), {s.cut_passing}/{s.cut} cut; mean |log| time "
        f"{s.mean_abs_log_time:.3f} bytes {s.mean_abs_log_bytes:.3f}; noise {s.noise_log_time:.3f} / "
        f"{s.noise_log_bytes:.3f}; {'met' if s.passed else 'missed'} -> {path}"
    )
    img = f"sim_emulation_{package}_{agents}.png"
    if update_docs:
        shutil.copyfile(out / "emulation.png", IMG / img)
    body = path.read_text().split("\n", 2)[2]  # drop the report's title
    body = body.replace("(emulation.png)", f"(img/{img})").replace("\n## ", "\n#### ")
    return [
        f"### Emulation check, {agents} agents: {title}",
        "",
        f"Load average {start_load:.1f} when it started, {load:.1f} when it ended, on {os.cpu_count()} cores.",
        "",
        body,
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
