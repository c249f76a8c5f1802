"""The emulation check's report: per-vehicle errors, overall errors, one plot."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.emulate.records import EmulationResult, VehicleRun

TARGET = 0.15


@dataclass
class VehicleVerdict:
    index: int
    cut: bool  # a window ended while its download was under way (on either side)
    verdict: str  # "within", "window-edge flip" or "missed"
    log_time: float  # log(simulated / real) of the completion time
    log_bytes: float


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
    verdicts: list[VehicleVerdict] = dataclasses.field(default_factory=list)
    mean_abs_log_time: float = math.nan
    mean_abs_log_bytes: float = math.nan
    noise_log_time: float = (
        math.nan
    )  # mean |log(run 2 / run 1)| of the real agents: the noise floor
    noise_log_bytes: float = math.nan

    @property
    def passing(self) -> int:
        return sum(v.verdict != "missed" for v in self.verdicts)

    @property
    def cut(self) -> int:
        return sum(v.cut for v in self.verdicts)

    @property
    def cut_passing(self) -> int:
        return sum(v.cut and v.verdict != "missed" for v in self.verdicts)

    @property
    def flips(self) -> int:
        return sum(v.verdict == "window-edge flip" for v in self.verdicts)

    @property
    def passed(self) -> bool:
        """Vehicle by vehicle: at least 90% of all, and of those cut, within 15% or a window-edge flip.

        A vehicle is within when its completion time and its bytes are each within
        15% of the real agent's. A window-edge flip is the one documented miss
        allowed: the earlier side's last byte came within drain + 2 RTT of a
        window's end and the other side's in the next window.
        """
        if self.finished != self.vehicles or self.sim_unfinished or not self.verdicts:
            return False
        ok_all = self.passing >= PASS_SHARE * len(self.verdicts)
        ok_cut = self.cut == 0 or self.cut_passing >= PASS_SHARE * self.cut
        return ok_all and ok_cut


PASS_SHARE = 0.90


def _window_of(windows: list[tuple[float, float]], t: float, slack: float) -> int | None:
    for i, (a, b) in enumerate(windows):
        if a - 1e-6 <= t <= b + slack:
            return i
    return None


def verdict_of(v: VehicleRun, drain_s: float) -> VehicleVerdict:
    """The vehicle's verdict under the rule of :attr:`ErrorSummary.passed`."""
    real, sim = v.done_at, v.sim_done
    lt = math.log(sim / real) if real and math.isfinite(sim) and sim > 0 else math.inf
    lb = math.log(v.sim_bytes / v.app_bytes) if v.app_bytes > 0 and v.sim_bytes > 0 else math.inf
    start = float(v.sessions[0]["start"]) if v.sessions else 0.0
    last = max(real or 0.0, sim if math.isfinite(sim) else 0.0)
    cut = any(start < b < last for _, b in v.windows)
    if real is None or not math.isfinite(sim):
        return VehicleVerdict(v.index, cut, "missed", lt, lb)
    if abs(v.time_error) <= TARGET and abs(v.bytes_error) <= TARGET:
        return VehicleVerdict(v.index, cut, "within", lt, lb)
    slack = drain_s + 2 * v.rtt_ms / 1000
    early, late = sorted((real, sim))
    i = _window_of(v.windows, early, drain_s)
    if i is not None and v.windows[i][1] - early <= slack and i + 1 < len(v.windows):
        if _window_of(v.windows, late, drain_s) == i + 1:
            return VehicleVerdict(v.index, cut, "window-edge flip", lt, lb)
    return VehicleVerdict(v.index, cut, "missed", lt, lb)


def _noise(a: list[VehicleRun], b: list[VehicleRun] | None) -> tuple[float, float]:
    if not b:
        return math.nan, math.nan
    lt = [
        abs(math.log(y.done_at / x.done_at))
        for x, y in zip(a, b, strict=False)
        if x.done_at and y.done_at
    ]
    lb = [
        abs(math.log(y.app_bytes / x.app_bytes))
        for x, y in zip(a, b, strict=False)
        if x.app_bytes and y.app_bytes
    ]
    return (float(np.mean(lt)) if lt else math.nan), (float(np.mean(lb)) if lb else math.nan)


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
    verdicts = [verdict_of(v, res.calibration.drain_s) for v in res.vehicles]
    logs_t = np.array([v.log_time for v in verdicts if math.isfinite(v.log_time)])
    logs_b = np.array([v.log_bytes for v in verdicts if math.isfinite(v.log_bytes)])
    noise_t, noise_b = _noise(res.vehicles, res.rerun)
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
        verdicts=verdicts,
        mean_abs_log_time=mean_abs(logs_t),
        mean_abs_log_bytes=mean_abs(logs_b),
        noise_log_time=noise_t,
        noise_log_bytes=noise_b,
    )


def _package(res: EmulationResult) -> str:
    p = res.package
    what = "the full file" if p.encoding == "full" else f"its '{p.encoding}' encoding"
    how = (
        "the agent resumes it across windows"
        if p.resumable
        else "a cut restarts it (`resumable = false`)"
    )
    return f"{what} ({p.nbytes:,} B; {how})"


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f}%"


def _f(x: float, fmt: str = "{:.3f}") -> str:
    return "n/a" if not math.isfinite(x) else fmt.format(x)


def write_emulation_report(res: EmulationResult, out: Path) -> tuple[Path, ErrorSummary]:
    out.mkdir(parents=True, exist_ok=True)
    s = summarise(res)
    plot_emulation(res, out / "emulation.png")
    cal = res.calibration
    verdict_by = {v.index: v for v in s.verdicts}
    rows = [
        "| vehicle | link | rate | RTT | windows (s) | sessions real / sim | done real | done sim | time error | bytes real | bytes sim | bytes error | cut | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in res.vehicles:
        wins = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in v.windows[:3]) + (
            " ..." if len(v.windows) > 3 else ""
        )
        done = f"{v.done_at:.2f} s" if v.done_at is not None else "not finished"
        vd = verdict_by[v.index]
        rows.append(
            f"| {v.index} | {v.link} | {v.rate_mbit:g} Mbit/s | {v.rtt_ms:g} ms | {wins} | {len(v.sessions)} / {v.sim_sessions} | "
            f"{done} | {v.sim_done:.2f} s | {_pct(v.time_error)} | {v.app_bytes:,} | {v.sim_bytes:,.0f} | {_pct(v.bytes_error)} | "
            f"{'yes' if vd.cut else 'no'} | {vd.verdict} |"
        )
    verdict = "**met**" if s.passed else "**missed**"
    share = 100 * PASS_SHARE
    noise = (
        f"Two real runs of the same vehicles differ by a mean |log ratio| of **{_f(s.noise_log_time)}** in time and "
        f"**{_f(s.noise_log_bytes)}** in bytes: the noise floor the simulator's error is set against."
        if res.rerun
        else "(One real run: no noise floor measured; `repeats=2` measures it.)"
    )
    md = f"""# Emulation check: simulator vs real agents on shaped links

{s.vehicles} real agents (one process each, in its own network namespace) installed the real
SqueezeNet v1.0 from a real registry over gRPC, which served {_package(res)}; each
downlink shaped by `tc tbf`, latency and reachability windows from a userspace relay (no
`netem` in this kernel, hence no packet loss). The same vehicles, links and windows went
through the simulator. Run took {res.wall_s:.0f} s of wall time.

Calibrated in the same run by four agents beside them, on {cal.rate_mbit:g} Mbit/s links of
{cal.rtt_ms[0]:g} and {cal.rtt_ms[1]:g} ms (on each, one always reachable, one cut once mid-download): a first
session waits **{cal.setup_s:.2f} s + {cal.setup_rtts:.1f} round trips** and receives
**{cal.session_overhead_bytes:,} B** besides the payload (TUF metadata, gRPC); a resumed one
**{cal.resume_setup_s:.2f} s + {cal.resume_setup_rtts:.1f}** and **{cal.resume_overhead_bytes:,} B**; after a cut,
**{cal.drain_s:.2f} s** of payload queued in the shaper still arrives.

## Verdict: {verdict}

Rule: a vehicle passes when its completion time and its bytes are each within
{100 * TARGET:.0f}% of the real agent's, or when it is a window-edge flip (the earlier side's last
byte within drain + 2 RTT of a window's end, the other side's in the next window); at least
{share:.0f}% of all vehicles and {share:.0f}% of the vehicles that were cut must pass.

- **{s.passing} of {s.vehicles}** vehicles pass ({s.flips} of them as window-edge flips); of the
  **{s.cut}** cut by a window's end, **{s.cut_passing}** pass.
- Mean |log(simulated / real)|: **{_f(s.mean_abs_log_time)}** in time, **{_f(s.mean_abs_log_bytes)}** in bytes.
- {noise}
- {s.finished} of {s.vehicles} real agents finished within the horizon; the simulator left
  {s.sim_unfinished} of those unfinished.

| measure | completion time | bytes |
|---|---|---|
| fleet total (sum of times / of bytes) | {_pct(s.time_overall)} | {_pct(s.bytes_overall)} |
| median vehicle (absolute error) | {100 * s.time_median_abs:.1f}% | {100 * s.bytes_median_abs:.1f}% |
| mean of per-vehicle errors (absolute) | {100 * s.time_mean_abs:.1f}% | {100 * s.bytes_mean_abs:.1f}% |
| worst vehicle (absolute) | {100 * s.time_max_abs:.1f}% | {100 * s.bytes_max_abs:.1f}% |

Error = (simulated - real) / real.

![simulated vs real completion times](emulation.png)

## Per vehicle

{chr(10).join(rows)}

"done" is the time of the last payload byte after the campaign start; "bytes" is what
the vehicle's interface received, less one Ethernet/IP/TCP header per packet (the
simulator counts application bytes).
"""
    path = out / "emulation.md"
    path.write_text(md)
    # Everything measured per vehicle (sessions, each payload request), for diagnosis.
    raw = {
        "calibration": dataclasses.asdict(cal),
        "package": dataclasses.asdict(res.package),
        "vehicles": [dataclasses.asdict(v) for v in res.vehicles],
        "verdicts": [dataclasses.asdict(v) for v in s.verdicts],
        "rerun": [dataclasses.asdict(v) for v in res.rerun] if res.rerun else None,
    }
    (out / "emulation.json").write_text(json.dumps(raw, indent=1, default=float))
    return path, s


def plot_emulation(res: EmulationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fin = [v for v in res.finished() if math.isfinite(v.sim_done)]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    links = sorted({v.link for v in fin})
    for lk in links:
        xs = [v.finished_at for v in fin if v.link == lk]
        ys = [v.sim_done for v in fin if v.link == lk]
        ax.scatter(xs, ys, label=lk, s=30, zorder=3, edgecolors="black", linewidths=0.4)
    top = max([v.finished_at for v in fin] + [v.sim_done for v in fin] + [1.0]) * 1.1
    grid = np.linspace(0, top, 50)
    ax.plot(grid, grid, color="0.3", lw=1, label="simulated = real", zorder=2)
    ax.fill_between(
        grid,
        grid * (1 - TARGET),
        grid * (1 + TARGET),
        color="0.88",
        label=f"±{100 * TARGET:.0f}%",
        zorder=1,
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("real agent: last byte (s after start)")
    ax.set_ylabel("simulator: last byte (s)")
    ax.set_title(f"{len(fin)} real agents on shaped links vs simulator", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
