"""A simulation's report: a markdown file and two PNG plots."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np

from simulator.scenario import Scenario
from simulator.simulate import QUANTILES, SimulationResult, StrategySummary

ASSUMPTIONS = """\
- Each vehicle has a cellular link (capacity, RTT, loss, drop-outs, price), a connectivity
  pattern, a hardware variant and possibly a home Wi-Fi. Every figure cites a source or says
  it is a guess (`simulator/assumptions.py`, the scenario's `[sources]`).
- Diurnal patterns: drives start at the hours people drive (FHWA NT-3, 2001 NHTS), 2.2 a day
  of 23.3 min (AAA American Driving Survey 2016-2017); the modem stays awake a while after
  parking; a drive ending at home in the evening is followed by a home Wi-Fi window for
  vehicles that have one. Flat patterns: exponential spells and gaps.
- Payload rate: link capacity x framing efficiency, capped by TCP's loss-limited rate
  1.22*MSS/(RTT*sqrt(loss)) (Mathis et al. 1997), times a log-normal factor per window;
  TCP slow start on every new connection (IW 10, RFC 6928); a cell's spare capacity shared
  by the fleet's vehicles in it (processor sharing); set-up seconds, round trips and
  metadata bytes per session as measured on the real agent.
- The registry offers the update to at most `max_concurrent` vehicles at once (0: no limit).
- Campaign: cumulative waves with per-wave advance shares and soak times; abort when
  failures among the vehicles targeted so far reach `abort_error_share`; install failures
  drawn per hardware variant, the same vehicles for every strategy.
- Not modelled: retries of failed installs, slots and cell load carried between waves, a
  vehicle switching operators. Switch effects off in `[model]` to see what each is worth.
"""


def fmt_hours(h: float) -> str:
    if not math.isfinite(h):
        return "not reached"
    if h < 1:
        return f"{h * 60:.0f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.1f} d"


def fmt_bytes(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:,.2f} {unit}"
    return f"{b:,.0f} B"


def strategy_table(summaries: list[StrategySummary]) -> str:
    base = next((s for s in summaries if s.strategy == "alexnet_fp32"), None)
    head = (
        "| strategy | package | fleet bytes | cost (USD) | updated | failed | stuck | "
        + " | ".join(f"{int(q * 100)}% at" for q in QUANTILES)
    )
    head += " | waves | vs AlexNet bytes |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summaries:
        ratio = (
            f"{base.nbytes / s.nbytes:,.0f}x less" if base and s is not base and s.nbytes else "1x"
        )
        waves = f"{s.waves_started}" + (
            f", aborted at {fmt_hours(s.abort_hours)}" if math.isfinite(s.abort_hours) else ""
        )
        rows.append(
            f"| {s.strategy} | {s.size.nbytes:,} B | {fmt_bytes(s.nbytes)} | {s.cost_usd:,.0f} | "
            f"{100 * s.updated_share:.2f}% | {s.failed:,} | {s.stuck:,} | "
            + " | ".join(fmt_hours(s.hours_to[q]) for q in QUANTILES)
            + f" | {waves} | {ratio} |"
        )
    return "\n".join(rows)


def link_table(summaries: list[StrategySummary]) -> str:
    rows = [
        "| link | strategy | vehicles | updated | bytes | cost (USD) | median time to update |",
        "|---|---|---|---|---|---|---|",
    ]
    links = [lk.link for lk in summaries[0].links] if summaries else []
    for i, name in enumerate(links):
        for s in summaries:
            lk = s.links[i]
            share = 100 * lk.updated / lk.vehicles if lk.vehicles else 0
            rows.append(
                f"| {name} | {s.strategy} | {lk.vehicles:,} | {share:.1f}% | {fmt_bytes(lk.nbytes)} | "
                f"{lk.cost_usd:,.0f} | {fmt_hours(lk.median_hours) if not math.isnan(lk.median_hours) else '-'} |"
            )
    return "\n".join(rows)


def scenario_tables(sc: Scenario, link_names: list[str]) -> str:
    rows = [
        "| link | capacity | RTT | loss | goodput | drop-outs/h | drop-out | price/GB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in link_names:
        lk = sc.links[name]
        rows.append(
            f"| {name} | {lk.bandwidth_mbps:g} Mbit/s | {lk.rtt_ms:g} ms | {lk.loss:g} | "
            f"{lk.goodput_bytes_per_s() * 8 / 1e6:.2f} Mbit/s | {lk.dropouts_per_hour:g} | {lk.dropout_s:g} s | {lk.price_per_gb:g} USD |"
        )
    rows += [
        "",
        "| fleet share | link | pattern | reachable spell | gap | dormant |",
        "|---|---|---|---|---|---|",
    ]
    for g in sc.fleet:
        p = sc.patterns[g.pattern]
        rows.append(
            f"| {100 * g.share:g}% | {g.link} | {g.pattern} | {p.on_mean_min:g} min | {p.off_mean_min:g} min | {100 * p.dormant_share:g}% |"
        )
    c = sc.campaign
    rows += [
        "",
        f"Campaign: waves {', '.join(f'{100 * w:g}%' for w in c.waves)}; advance at {100 * c.advance_share:g}% installed "
        f"and {c.soak_hours:g} h soak; abort at {100 * c.abort_error_share:g}% failures (min {c.abort_min_failures}); "
        f"install {c.install_s:g} s, fails {100 * c.install_failure_rate:g}%; check-in every {c.poll_min:g} min; "
        f"resumable downloads: {'yes' if c.resumable else 'no'}; horizon {sc.horizon_days:g} days.",
        "",
        f"Agent protocol: {sc.protocol.setup_rtts:g} round trips and {sc.protocol.session_overhead_bytes:,} B before "
        f"the payload in a first session, {sc.protocol.resume_setup_rtts:g} and {sc.protocol.resume_overhead_bytes:,} B "
        f"in a resumed one; resume in chunks of {sc.protocol.resume_chunk_bytes:,} B.",
    ]
    return "\n".join(rows)


def write_report(result: SimulationResult, out: Path) -> Path:
    """Write ``report.md``, ``coverage.png`` and ``bytes.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sums = result.summaries()
    plot_coverage(result, out / "coverage.png")
    plot_bytes(sums, out / "bytes.png", result.scenario.name)
    sc = result.scenario
    sizes = "\n".join(
        ["| strategy | bytes | where the size comes from |", "|---|---|---|"]
        + [f"| {s} | {p.nbytes:,} | {p.source} |" for s, p in result.sizes.items()]
    )
    md = f"""# Fleet simulation: {sc.name}

{sc.description}

{result.fleet.n:,} simulated vehicles, seed {result.fleet.seed}, horizon {sc.horizon_days:g} days;
simulated in {result.elapsed_s:.1f} s. **Simulated**, not measured: the links, patterns and
prices below are assumptions; the package sizes are measured on real artifacts (see sources).

## Outcome per strategy

{strategy_table(sums)}

"updated" runs the new model within the horizon; "stuck" neither updated nor failed
(unreachable, download unfinished, campaign aborted or wave never started).

![fleet share updated over time](coverage.png)

![bytes per strategy](bytes.png)

## Package sizes

{sizes}

## Per link

{link_table(sums)}

## Fleet, links and campaign (assumptions)

{scenario_tables(sc, result.fleet.link_names)}

## Model

{ASSUMPTIONS}"""
    path = out / "report.md"
    path.write_text(md)
    return path


def _plt() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


SHORT_LABELS: dict[str, str] = {
    "alexnet_fp32": "AlexNet fp32",
    "squeezenet_fp32": "SqueezeNet fp32",
    "squeezenet_zstd": "SqueezeNet zstd",
    "squeezenet_deep_compression": "SqueezeNet Deep Compr.",
    "squeezenet_int8": "SqueezeNet int8",
    "squeezenet_delta": "SqueezeNet delta",
}
_STYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]


def plot_coverage(result: SimulationResult, path: Path) -> None:
    plt = _plt()
    horizon_h = result.scenario.horizon_s / 3600
    # Show up to where the last strategy levels off, not the whole (mostly flat) horizon.
    ends = [
        np.quantile(r.success[np.isfinite(r.success)], 0.999) / 3600
        for r in result.runs.values()
        if np.isfinite(r.success).any()
    ]
    xmax = min(horizon_h, 1.1 * max(ends)) if ends else horizon_h
    hours = np.linspace(0, xmax, 1200)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for i, (name, cov) in enumerate(result.coverage(hours).items()):
        ax.plot(
            hours,
            100 * cov,
            ls=_STYLES[i % len(_STYLES)],
            lw=2.4 - 0.25 * i,
            label=f"{SHORT_LABELS.get(name, name)} ({fmt_bytes(result.sizes[name].nbytes)})",
        )
    for q in QUANTILES:
        ax.axhline(100 * q, color="0.85", lw=0.8, zorder=0)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 100)
    ax.set_xlabel("hours since the campaign started")
    ax.set_ylabel("fleet running the new model (%)")
    ax.set_title(f"{result.scenario.name}: {result.fleet.n:,} vehicles (simulated)")
    ax.legend(loc="lower right", fontsize=8, frameon=True)
    ax.grid(True, color="0.93")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_bytes(sums: list[StrategySummary], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(sums) + 1.4), dpi=110)
    names = [SHORT_LABELS.get(s.strategy, s.strategy) for s in sums]
    vals = [s.nbytes / 1e9 for s in sums]
    bars = ax.barh(
        names,
        vals,
        color=["#c0504d" if s.strategy.startswith("alexnet") else "#4f81bd" for s in sums],
    )
    ax.set_xscale("log")
    ax.invert_yaxis()
    for b, s in zip(bars, sums, strict=False):
        ax.text(
            b.get_width() * 1.1,
            b.get_y() + b.get_height() / 2,
            f"{fmt_bytes(s.nbytes)}, {s.cost_usd:,.0f} USD",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(min(vals) / 2, max(vals) * 60)
    ax.set_xlabel("GB sent to the whole fleet (log scale)")
    ax.set_title(f"{title}: bytes and data cost (simulated)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
