"""How much each main assumption moves the answer: time to 50/90/99 % updated and cost.

Each assumption is set to a low and a high value (the rest as in the scenario)
and the campaign is played on ``seeds`` fleets; each setting is compared with
the scenario as written on the *same* seeds (paired differences), and the
report gives the mean difference with a 95 % confidence interval over seeds
(Student's t). A share not reached within the horizon is counted, not averaged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.campaign import run_campaign
from simulator.fleet import build_fleet
from simulator.scenario import Pattern, Scenario
from simulator.simulate import QUANTILES, hours_to_share

log = logging.getLogger(__name__)

DEFAULT_STRATEGY = "squeezenet_deep_compression"
# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def _links(sc: Scenario, **scale: float) -> Scenario:
    links = {
        k: dataclasses.replace(v, **{f: getattr(v, f) * x for f, x in scale.items()})
        for k, v in sc.links.items()
    }
    return sc.replace(links=links)


def _patterns(sc: Scenario, f: Callable[[Pattern], dict[str, Any]]) -> Scenario:
    return sc.replace(patterns={k: dataclasses.replace(p, **f(p)) for k, p in sc.patterns.items()})


def _drives(sc: Scenario, x: float) -> Scenario:
    # Diurnal patterns drive x times as often; flat ones have gaps 1/x as long.
    return _patterns(
        sc,
        lambda p: (
            {"drives_per_day": p.drives_per_day * x}
            if p.diurnal
            else {"off_mean_min": p.off_mean_min / x}
        ),
    )


def _protocol(sc: Scenario, x: float) -> Scenario:
    pr = sc.protocol
    return sc.replace(
        protocol=dataclasses.replace(
            pr, setup_rtts=pr.setup_rtts * x, resume_setup_rtts=pr.resume_setup_rtts * x
        )
    )


def _campaign(sc: Scenario, **over: Any) -> Scenario:  # Campaign fields of several types
    return sc.replace(campaign=dataclasses.replace(sc.campaign, **over))


@dataclass(frozen=True)
class Assumption:
    name: str
    low: str
    high: str
    apply: Callable[
        [Scenario, bool, int], Scenario
    ]  # (scenario, high?, fleet size) -> varied scenario


ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("drives a day", "x0.5", "x2", lambda sc, hi, n: _drives(sc, 2.0 if hi else 0.5)),
    Assumption(
        "drive length",
        "x0.5",
        "x2",
        lambda sc, hi, n: _patterns(
            sc, lambda p: {"on_mean_min": p.on_mean_min * (2.0 if hi else 0.5)}
        ),
    ),
    Assumption(
        "parked-awake time",
        "none",
        "x3",
        lambda sc, hi, n: _patterns(
            sc, lambda p: {"awake_after_min": p.awake_after_min * (3.0 if hi else 0.0)}
        ),
    ),
    Assumption(
        "home Wi-Fi share",
        "none",
        "x2",
        lambda sc, hi, n: _patterns(
            sc, lambda p: {"home_wifi_share": min(1.0, p.home_wifi_share * 2) if hi else 0.0}
        ),
    ),
    Assumption(
        "link rate", "x0.5", "x2", lambda sc, hi, n: _links(sc, bandwidth_mbps=2.0 if hi else 0.5)
    ),
    Assumption("RTT", "x0.5", "x3", lambda sc, hi, n: _links(sc, rtt_ms=3.0 if hi else 0.5)),
    Assumption("loss", "x0.2", "x5", lambda sc, hi, n: _links(sc, loss=5.0 if hi else 0.2)),
    Assumption(
        "drop-outs an hour",
        "x0.5",
        "x2",
        lambda sc, hi, n: _links(sc, dropouts_per_hour=2.0 if hi else 0.5),
    ),
    Assumption(
        "set-up round trips", "x0.5", "x3", lambda sc, hi, n: _protocol(sc, 3.0 if hi else 0.5)
    ),
    Assumption(
        "cell load by others",
        "20%",
        "90%",
        lambda sc, hi, n: sc.replace(
            links={
                k: dataclasses.replace(v, cell_background=0.9 if hi else 0.2)
                for k, v in sc.links.items()
            }
        ),
    ),
    Assumption(
        "registry limit",
        "1% of fleet",
        "0.1% of fleet",
        lambda sc, hi, n: _campaign(sc, max_concurrent=max(1, round(n * (0.001 if hi else 0.01)))),
    ),
    Assumption(
        "campaign start",
        "Tue 02:00",
        "Tue 18:00",
        lambda sc, hi, n: _campaign(sc, start_hour=42.0 if hi else 26.0),
    ),
)


@dataclass
class Outcome:
    """One campaign's figures: hours to each share (inf: not reached) and cost."""

    hours: dict[float, float]
    cost: float


@dataclass
class SensitivityResult:
    scenario: Scenario
    vehicles: int
    seeds: list[int]
    strategy: str
    size: int
    baseline: list[Outcome]
    varied: dict[tuple[str, str], list[Outcome]]  # (assumption, level) -> per seed


def play(sc: Scenario, n: int, seed: int, strategy: str, size: int) -> Outcome:
    run = run_campaign(build_fleet(sc, n, seed), strategy, size)
    return Outcome({q: hours_to_share(run.success, n, q) for q in QUANTILES}, float(run.cost.sum()))


def run_sensitivity(
    sc: Scenario,
    n: int,
    seeds: int,
    strategy: str,
    size: int,
    *,
    echo: Callable[[str], None] = lambda m: None,
    assumptions: tuple[Assumption, ...] = ASSUMPTIONS,
) -> SensitivityResult:
    seed_list = [sc.seed + 1000 * i for i in range(seeds)]
    base = [play(sc, n, s, strategy, size) for s in seed_list]
    varied: dict[tuple[str, str], list[Outcome]] = {}
    for a in assumptions:
        for hi, level in ((False, a.low), (True, a.high)):
            echo(f"{a.name}: {level}")
            varied[(a.name, level)] = [
                play(a.apply(sc, hi, n), n, s, strategy, size) for s in seed_list
            ]
    return SensitivityResult(sc, n, seed_list, strategy, size, base, varied)


def mean_ci(x: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % confidence interval (nan when any value is infinite)."""
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return math.nan, math.nan
    if a.size < 2:
        return float(a.mean()), math.nan
    t = T975[min(a.size - 1, len(T975)) - 1]
    return float(a.mean()), float(t * a.std(ddof=1) / math.sqrt(a.size))


def _cell(m: float, h: float, fmt: str, signed: bool = True) -> str:
    if not math.isfinite(m):
        return "not reached"
    sign = "+" if signed else ""
    return f"{m:{sign}{fmt}} ± {h:{fmt}}" if math.isfinite(h) else f"{m:{sign}{fmt}}"


def table(res: SensitivityResult) -> str:
    heads = [f"Δ {int(q * 100)}% at (h)" for q in QUANTILES]
    rows = [
        f"| assumption | setting | {' | '.join(heads)} | Δ cost (USD) |",
        "|---|---|" + "---|" * (len(heads) + 1),
    ]
    base_cells = [
        _cell(*mean_ci([o.hours[q] for o in res.baseline]), ".1f", signed=False) for q in QUANTILES
    ]
    cost_cell = _cell(*mean_ci([o.cost for o in res.baseline]), ",.0f", signed=False)
    rows.append(f"| **as written** (absolute) | | {' | '.join(base_cells)} | {cost_cell} |")
    for (name, level), outs in res.varied.items():
        cells = []
        for q in QUANTILES:
            d = [o.hours[q] - b.hours[q] for o, b in zip(outs, res.baseline, strict=False)]
            miss = sum(not math.isfinite(o.hours[q]) for o in outs)
            cells.append(
                f"not reached in {miss}/{len(outs)}" if miss else _cell(*mean_ci(d), ".1f")
            )
        dc = _cell(
            *mean_ci([o.cost - b.cost for o, b in zip(outs, res.baseline, strict=False)]), ",.0f"
        )
        rows.append(f"| {name} | {level} | {' | '.join(cells)} | {dc} |")
    return "\n".join(rows)


def write_sensitivity(res: SensitivityResult, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"sensitivity_{res.scenario.name}.png"
    plot(res, png)
    md = out / f"sensitivity_{res.scenario.name}.md"
    md.write_text(
        f"### Sensitivity: {res.scenario.name}, {res.vehicles:,} vehicles, {res.strategy} ({res.size:,} B)\n\n"
        f"Each assumption set low and high, everything else as written; {len(res.seeds)} seeds per setting, "
        "differences paired by seed against the scenario as written; ± is the 95% confidence interval over seeds "
        "(Student's t). Simulated, not measured.\n\n"
        + table(res)
        + f"\n\n![sensitivity]({png.name})\n"
    )
    return md, png


def plot(res: SensitivityResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(name for name, _ in res.varied))
    fig, axes = plt.subplots(
        1, len(QUANTILES), figsize=(13, 0.45 * len(names) + 1.8), dpi=110, sharey=True
    )
    for ax, q in zip(axes, QUANTILES, strict=False):
        for k, (name, level) in enumerate(res.varied):
            outs = res.varied[(name, level)]
            m, h = mean_ci(
                [o.hours[q] - b.hours[q] for o, b in zip(outs, res.baseline, strict=False)]
            )
            y = names.index(name) + (0.18 if k % 2 else -0.18)
            if math.isfinite(m):
                ax.barh(
                    y,
                    m,
                    height=0.34,
                    color="#c0504d" if k % 2 else "#4f81bd",
                    xerr=h if math.isfinite(h) else None,
                    capsize=2,
                    label=("high" if k % 2 else "low") if names.index(name) == 0 else None,
                )
            else:
                ax.text(0, y, " not reached", va="center", fontsize=7)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_title(f"change in time to {int(q * 100)}% (h)", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"{res.scenario.name}: {res.vehicles:,} vehicles, {len(res.seeds)} seeds, 95% CI (simulated)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
