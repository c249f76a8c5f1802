"""``ota simulate`` through click's runner, as a user runs it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ota.cli import cli


def test_simulate_writes_report_and_plots(tmp_path: Path, sizes_cache: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--scenario",
            "rural_3g",
            "--vehicles",
            "3000",
            "--out",
            str(out),
            "--cache-dir",
            str(sizes_cache),
            "--strategies",
            "alexnet_fp32,squeezenet_fp32,squeezenet_delta",
        ],
    )
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert "3,000 simulated vehicles" in md
    for s in ("alexnet_fp32", "squeezenet_fp32", "squeezenet_delta", "3g_rural", "Iandola"):
        assert s in md
    for png in ("coverage.png", "bytes.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "squeezenet_delta" in r.output


def test_simulate_is_deterministic_for_a_seed(tmp_path: Path, sizes_cache: Path) -> None:
    reports = []
    for i in range(2):
        out = tmp_path / str(i)
        r = CliRunner().invoke(
            cli,
            [
                "simulate",
                "--scenario",
                "city_lte",
                "-n",
                "2000",
                "--seed",
                "9",
                "--out",
                str(out),
                "--cache-dir",
                str(sizes_cache),
                "--strategies",
                "squeezenet_fp32",
            ],
        )
        assert r.exit_code == 0, r.output
        reports.append(
            "\n".join(
                line
                for line in (out / "report.md").read_text().splitlines()
                if "simulated in" not in line
            )
        )
    assert reports[0] == reports[1]


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli, ["simulate", "--scenario", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(
        cli, ["simulate", "--strategies", "carrier_pigeon", "--out", str(tmp_path), "-n", "10"]
    )
    assert r.exit_code == 2 and "carrier_pigeon" in r.output


def test_sensitivity_reports_each_assumption_with_confidence_intervals(
    tmp_path: Path, sizes_cache: Path
) -> None:
    out = tmp_path / "sens"
    r = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--sensitivity",
            "--scenario",
            "city_lte",
            "-n",
            "1500",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--cache-dir",
            str(sizes_cache),
            "--strategies",
            "squeezenet_fp32",
        ],
    )
    assert r.exit_code == 0, r.output
    md = (out / "sensitivity_city_lte.md").read_text()
    from simulator.sensitivity import ASSUMPTIONS

    for a in ASSUMPTIONS:
        assert f"| {a.name} | {a.low} |" in md and f"| {a.name} | {a.high} |" in md
    assert "± " in md and "95% confidence interval" in md
    assert (out / "sensitivity_city_lte.png").read_bytes()[:4] == b"\x89PNG"


def test_fewer_drives_a_day_delay_the_rollout_beyond_the_seeds_spread() -> None:
    from simulator.scenario import load_scenario
    from simulator.sensitivity import ASSUMPTIONS, mean_ci, run_sensitivity

    drives = tuple(a for a in ASSUMPTIONS if a.name == "drives a day")
    res = run_sensitivity(load_scenario("city_lte"), 2000, 3, "s", 600_000, assumptions=drives)
    fewer = [
        o.hours[0.5] - b.hours[0.5]
        for o, b in zip(res.varied[("drives a day", "x0.5")], res.baseline, strict=False)
    ]
    more = [
        o.hours[0.5] - b.hours[0.5]
        for o, b in zip(res.varied[("drives a day", "x2")], res.baseline, strict=False)
    ]
    (m_f, h_f), (m_m, h_m) = mean_ci(fewer), mean_ci(more)
    assert m_f - h_f > 0 > m_m + h_m
