"""``ota simulate``: play a fleet rollout over modelled links and write a report."""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from otawire.cli_out import table_console
from simulator.report import fmt_bytes, fmt_hours, write_report
from simulator.scenario import Scenario, ScenarioError, load_scenario, ready_scenarios
from simulator.simulate import QUANTILES
from simulator.simulate import simulate as run_simulation
from simulator.sizes import ProjectArtifacts, UnknownStrategyError


@click.command("simulate")
@click.option(
    "--scenario",
    "scenario_path",
    default=None,
    help=f"Scenario TOML file, or a ready one by name ({', '.join(ready_scenarios())}). "
    "Default: city_lte, or emulation with --emulate.",
)
@click.option(
    "--vehicles",
    "-n",
    type=click.IntRange(min=1),
    default=None,
    help="Fleet size (default: the scenario's).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Random seed (default: the scenario's). Same seed, same result.",
)
@click.option(
    "--strategies",
    default=None,
    help="Comma-separated strategies to compare (default: the scenario's).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sim-out"),
    show_default=True,
    help="Where to write report.md and the PNG plots.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache for measured package sizes.",
)
@click.option(
    "--emulate",
    is_flag=True,
    help="Instead: run real agents against a real registry over shaped links "
    "(network namespaces, tc; needs root) and compare them with the simulator.",
)
@click.option(
    "--agents",
    type=click.IntRange(1, 250),
    default=None,
    help="With --emulate: how many real agents (default: the scenario's vehicles).",
)
@click.option(
    "--package",
    type=click.Choice(["served", "full"]),
    default="served",
    show_default=True,
    help="With --emulate: what the registry sends: its smallest encoding (as it does), or the full file.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="With --emulate: run the real agents this many times; 2 measures the real-vs-real noise floor.",
)
@click.option(
    "--sensitivity",
    is_flag=True,
    help="Instead: vary each main assumption low/high and report how it moves "
    "time to 50/90/99%% and cost, with 95%% confidence intervals over seeds (markdown + PNG in --out).",
)
@click.option(
    "--seeds",
    type=click.IntRange(2, 50),
    default=5,
    show_default=True,
    help="With --sensitivity: seeds per setting.",
)
def simulate_cmd(
    scenario_path: str | None,
    vehicles: int | None,
    seed: int | None,
    strategies: str | None,
    out_dir: Path,
    cache_dir: Path | None,
    emulate: bool,
    agents: int | None,
    package: str,
    repeats: int,
    sensitivity: bool,
    seeds: int,
) -> None:
    """Simulate a staged rollout to a fleet over limited links, once per strategy
    (AlexNet-sized full download vs SqueezeNet full, compressed, int8, delta),
    on the same fleet and seed; write a markdown report and plots to --out.

    With --emulate, check the simulator against K real agents instead."""
    console = Console(stderr=True)
    try:
        sc = load_scenario(scenario_path or ("emulation" if emulate else "city_lte"))
    except ScenarioError as e:
        raise click.UsageError(str(e)) from None
    if seed is not None:
        sc = sc.replace(seed=seed)
    if emulate:
        _emulate(sc, agents or vehicles or sc.vehicles, package, out_dir, console, repeats)
        return
    if sensitivity:
        _sensitivity(sc, vehicles or 20_000, seeds, strategies, cache_dir, out_dir, console)
        return
    if strategies:
        sc = sc.replace(strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()))
    n = vehicles or sc.vehicles
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(
            f"{sc.name}: {len(sc.strategies)} strategies x {n:,} vehicles",
            total=n * len(sc.strategies),
        )
        try:
            result = run_simulation(
                sc,
                n,
                seed=seed,
                sizes=ProjectArtifacts(cache_dir),
                progress=lambda k: bar.advance(task, k),
            )
        except UnknownStrategyError as e:
            raise click.UsageError(str(e.args[0])) from None
    report = write_report(result, out_dir)
    table = Table(title=f"{sc.name}: {n:,} vehicles, simulated in {result.elapsed_s:.1f} s")
    for col in (
        "strategy",
        "package",
        "fleet bytes",
        "cost USD",
        "updated",
        *(f"{int(q * 100)}% at" for q in QUANTILES),
    ):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for s in result.summaries():
        table.add_row(
            s.strategy,
            fmt_bytes(s.size.nbytes),
            fmt_bytes(s.nbytes),
            f"{s.cost_usd:,.0f}",
            f"{100 * s.updated_share:.1f}%",
            *(fmt_hours(s.hours_to[q]) for q in QUANTILES),
        )
        if math.isfinite(s.abort_hours):
            table.add_row("", "", "", "", f"[red]aborted at {fmt_hours(s.abort_hours)}")
    table_console().print(table)
    click.echo(f"report: {report}")


def _emulate(
    sc: Scenario, n: int, package: str, out_dir: Path, console: Console, repeats: int = 1
) -> None:
    from simulator.emulate.harness import emulate
    from simulator.emulate.netns import EmulationUnavailable, check_available
    from simulator.emulate.report import PASS_SHARE, TARGET, write_emulation_report

    try:
        check_available()
    except EmulationUnavailable as e:
        raise click.ClickException(f"cannot emulate here: {e}") from None
    with console.status(
        f"emulating {n} real agents over shaped links ({sc.horizon_s:.0f} s horizon)"
    ) as st:
        try:
            res = emulate(
                sc, n, sc.horizon_s, package=package, echo=lambda m: st.update(m), repeats=repeats
            )
        except EmulationUnavailable as e:
            raise click.ClickException(f"cannot emulate here: {e}") from None
    path, s = write_emulation_report(res, out_dir)
    table = Table(title=f"simulator vs {n} real agents ({sc.name})")
    for col in ("measure", "completion time", "bytes"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row(
        "fleet total error", f"{100 * s.time_overall:+.1f}%", f"{100 * s.bytes_overall:+.1f}%"
    )
    table.add_row(
        "median vehicle |error|",
        f"{100 * s.time_median_abs:.1f}%",
        f"{100 * s.bytes_median_abs:.1f}%",
    )
    table.add_row(
        "mean per-vehicle |error|",
        f"{100 * s.time_mean_abs:.1f}%",
        f"{100 * s.bytes_mean_abs:.1f}%",
    )
    table.add_row(
        "worst vehicle |error|", f"{100 * s.time_max_abs:.1f}%", f"{100 * s.bytes_max_abs:.1f}%"
    )
    table.add_row(
        "mean |log(sim/real)|", f"{s.mean_abs_log_time:.3f}", f"{s.mean_abs_log_bytes:.3f}"
    )
    if math.isfinite(s.noise_log_time):
        table.add_row(
            "real vs real (noise floor)", f"{s.noise_log_time:.3f}", f"{s.noise_log_bytes:.3f}"
        )
    table_console().print(table)
    click.echo(
        f"{s.finished}/{s.vehicles} agents finished; {s.passing} pass ({s.flips} window-edge flips), "
        f"{s.cut_passing} of the {s.cut} cut; report: {path}"
    )
    if not s.passed:
        raise click.ClickException(
            f"fewer than {100 * PASS_SHARE:.0f}% of the vehicles (or of those cut) are within {100 * TARGET:.0f}% "
            f"of the real agents or window-edge flips (see {path})"
        )


def _sensitivity(
    sc: Scenario,
    n: int,
    seeds: int,
    strategies: str | None,
    cache_dir: Path | None,
    out_dir: Path,
    console: Console,
) -> None:
    from simulator.sensitivity import DEFAULT_STRATEGY, run_sensitivity, write_sensitivity

    strategy = (strategies or DEFAULT_STRATEGY).split(",")[0].strip()
    try:
        size = ProjectArtifacts(cache_dir).sizes([strategy])[strategy].nbytes
    except UnknownStrategyError as e:
        raise click.UsageError(str(e.args[0])) from None
    with console.status(
        f"sensitivity of {sc.name}: {n:,} vehicles x {seeds} seeds per setting"
    ) as st:
        res = run_sensitivity(sc, n, seeds, strategy, size, echo=lambda m: st.update(m))
    md, png = write_sensitivity(res, out_dir)
    click.echo(md.read_text())
    click.echo(f"report: {md}; plot: {png}")


simulate = simulate_cmd
