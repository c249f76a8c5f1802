"""``ota simulate`` through click's runner, as a user runs it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ota.cli import cli


def test_simulate_writes_report_and_plots(tmp_path: Path, sizes_cache: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        ["simulate", "--scenario", "rural_3g", "--vehicles", "3000", "--out", str(out), "--cache-dir", str(sizes_cache),
         "--strategies", "alexnet_fp32,squeezenet_fp32,squeezenet_delta"],
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
            cli, ["simulate", "--scenario", "city_lte", "-n", "2000", "--seed", "9", "--out", str(out),
                  "--cache-dir", str(sizes_cache), "--strategies", "squeezenet_fp32"]
        )
        assert r.exit_code == 0, r.output
        reports.append("\n".join(l for l in (out / "report.md").read_text().splitlines() if "simulated in" not in l))
    assert reports[0] == reports[1]


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["simulate", "--scenario", str(tmp_path / "nope.toml"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(cli, ["simulate", "--strategies", "carrier_pigeon", "--out", str(tmp_path), "-n", "10"])
    assert r.exit_code == 2 and "carrier_pigeon" in r.output
