"""The emulation check's report: per-vehicle errors, overall errors, one plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.emulate.harness import EmulationResult

TARGET = 0.15


@dataclass
class ErrorSummary:
    finished: int
    vehicles: int
    time_mean_abs: float
    time_median_abs: float
    time_max_abs: float
    time_overall: float
    bytes_mean_abs: float
    bytes_median_abs: float
    bytes_max_abs: float
    bytes_overall: float
    sim_unfinished: int  # vehicles the real agents finished and the simulator did not
    beyond: int  # vehicles whose time or bytes error exceeds the target

    @property
    def passed(self) -> bool:
        """The fleet totals and the median vehicle within the target, every agent finished.

        Not the mean of per-vehicle errors: a vehicle whose download ends within a
        few hundred milliseconds of a window's end flips between that window and a
        much later one, and one such vehicle moves a mean of 20 by several points.
        Those vehicles are counted and listed instead.
        """
        return (
            self.finished == self.vehicles
            and self.sim_unfinished == 0
            and max(self.time_median_abs, abs(self.time_overall), self.bytes_median_abs, abs(self.bytes_overall)) < TARGET
        )


def summarise(res: EmulationResult) -> ErrorSummary:
    te, be = res.time_errors(), res.bytes_errors()
    fin_t = te[np.isfinite(te)]

    def mean_abs(a: np.ndarray) -> float:
        return float(np.mean(np.abs(a))) if a.size else math.nan

    def max_abs(a: np.ndarray) -> float:
        return float(np.max(np.abs(a))) if a.size else math.nan

    def median_abs(a: np.ndarray) -> float:
        return float(np.median(np.abs(a))) if a.size else math.nan

    worst = np.maximum(np.abs(np.nan_to_num(te, nan=np.inf)), np.abs(np.nan_to_num(be, nan=np.inf)))

    return ErrorSummary(
        finished=len(res.finished()),
        vehicles=len(res.vehicles),
        time_mean_abs=mean_abs(fin_t),
        time_median_abs=median_abs(fin_t),
        time_max_abs=max_abs(fin_t),
        time_overall=res.overall_time_error(),
        bytes_mean_abs=mean_abs(be),
        bytes_median_abs=median_abs(be),
        bytes_max_abs=max_abs(be),
        bytes_overall=res.overall_bytes_error(),
        sim_unfinished=int(np.sum(~np.isfinite(te))),
        beyond=int(np.sum(worst > TARGET)),
    )


def _package(res: EmulationResult) -> str:
    p = res.package
    what = "the full file" if p.encoding == "full" else f"its '{p.encoding}' encoding"
    how = "the agent resumes it across windows" if p.resumable else "a cut restarts it (`resumable = false`)"
    return f"{what} ({p.nbytes:,} B; {how})"


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f}%"


def write_emulation_report(res: EmulationResult, out: Path) -> tuple[Path, ErrorSummary]:
    out.mkdir(parents=True, exist_ok=True)
    s = summarise(res)
    plot_emulation(res, out / "emulation.png")
    cal = res.calibration
    rows = [
        "| vehicle | link | rate | RTT | windows (s) | sessions real / sim | done real | done sim | time error | bytes real | bytes sim | bytes error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in res.vehicles:
        wins = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in v.windows[:3]) + (" ..." if len(v.windows) > 3 else "")
        done = f"{v.done_at:.2f} s" if v.done_at is not None else "not finished"
        rows.append(
            f"| {v.index} | {v.link} | {v.rate_mbit:g} Mbit/s | {v.rtt_ms:g} ms | {wins} | {len(v.sessions)} / {v.sim_sessions} | "
            f"{done} | {v.sim_done:.2f} s | {_pct(v.time_error)} | {v.app_bytes:,} | {v.sim_bytes:,.0f} | {_pct(v.bytes_error)} |"
        )
    verdict = "**within**" if s.passed else "**NOT within**"
    md = f"""# Emulation check: simulator vs real agents on shaped links

{s.vehicles} real agents (one process each, in its own network namespace) installed the real
SqueezeNet v1.0 from a real registry over gRPC, which served {_package(res)}; each
downlink shaped by `tc tbf`, latency and reachability windows from a userspace relay (no
`netem` in this kernel, hence no packet loss). The same vehicles, links and windows went
through the simulator. Run took {res.wall_s:.0f} s of wall time.

Calibrated first on two agents over a {cal.rate_mbit:g} Mbit/s, {cal.rtt_ms:g} ms link (one always
reachable, one cut {cal.cut_at_s:g} s into its download): a first session waits
**{cal.setup_rtts:.1f} round trips** and receives **{cal.session_overhead_bytes:,} B** besides the payload
(TUF metadata, gRPC); a resumed one **{cal.resume_setup_rtts:.1f}** and **{cal.resume_overhead_bytes:,} B**;
after a cut, **{cal.drain_s:.2f} s** of payload queued in the shaper still arrives.

## Overall ({verdict} the {100 * TARGET:.0f}% target)

| measure | completion time | bytes |
|---|---|---|
| fleet total (sum of times / of bytes) | {_pct(s.time_overall)} | {_pct(s.bytes_overall)} |
| median vehicle (absolute error) | {100 * s.time_median_abs:.1f}% | {100 * s.bytes_median_abs:.1f}% |
| mean of per-vehicle errors (absolute) | {100 * s.time_mean_abs:.1f}% | {100 * s.bytes_mean_abs:.1f}% |
| worst vehicle (absolute) | {100 * s.time_max_abs:.1f}% | {100 * s.bytes_max_abs:.1f}% |

{s.finished} of {s.vehicles} real agents finished within the horizon; the simulator left
{s.sim_unfinished} of those unfinished; **{s.beyond} of {s.vehicles} vehicles** are off by more than
{100 * TARGET:.0f}% in time or bytes (see the table below: typically a download that ends within
a fraction of a second of a window's end on one side and in a later window on the other).
Error = (simulated - real) / real. The check holds the fleet totals and the median vehicle
under {100 * TARGET:.0f}%.

![simulated vs real completion times](emulation.png)

## Per vehicle

{chr(10).join(rows)}

"done" is the time of the last payload byte after the campaign start; "bytes" is what
the vehicle's interface received, less one Ethernet/IP/TCP header per packet (the
simulator counts application bytes).
"""
    path = out / "emulation.md"
    path.write_text(md)
    return path, s


def plot_emulation(res: EmulationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fin = [v for v in res.finished() if math.isfinite(v.sim_done)]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    links = sorted({v.link for v in fin})
    for lk in links:
        xs = [v.done_at for v in fin if v.link == lk]
        ys = [v.sim_done for v in fin if v.link == lk]
        ax.scatter(xs, ys, label=lk, s=30, zorder=3, edgecolors="black", linewidths=0.4)
    top = max([v.done_at for v in fin] + [v.sim_done for v in fin] + [1.0]) * 1.1  # type: ignore[operator]
    grid = np.linspace(0, top, 50)
    ax.plot(grid, grid, color="0.3", lw=1, label="simulated = real", zorder=2)
    ax.fill_between(grid, grid * (1 - TARGET), grid * (1 + TARGET), color="0.88", label=f"±{100 * TARGET:.0f}%", zorder=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("real agent: last byte (s after start)")
    ax.set_ylabel("simulator: last byte (s)")
    ax.set_title(f"{len(fin)} real agents on shaped links vs simulator", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
