"""Scenario files, and package sizes measured on the project's real artifacts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelpack import codecs
from modelpack.lineage import build_lineage
from server.encodings import CODECS
from simulator.scenario import ScenarioError, load_scenario, ready_scenarios
from simulator.sizes import ALEXNET_BYTES, ProjectArtifacts, StaticSizes, UnknownStrategyError


def test_ready_scenarios_ship_and_load() -> None:
    names = ready_scenarios()
    assert {"city_lte", "rural_3g", "trucks_satellite"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
        assert abs(sum(g.share for g in sc.fleet) - 1) < 1e-9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[fleet]]\nshare = 1.0\nlink = 'dialup'\npattern = 'commuter'\n",
            "unknown link 'dialup'",
        ),
        ("[[fleet]]\nshare = 0.5\nlink = 'lte'\npattern = 'commuter'\n", "add up to 0.5"),
        (
            "[links.lte]\nbandwith_mbps = 3\n[[fleet]]\nshare = 1.0\nlink = 'lte'\npattern = 'commuter'\n",
            "unknown field(s) ['bandwith_mbps']",
        ),
        (
            "[campaign]\nwaves = [0.5, 0.2]\n[[fleet]]\nshare = 1.0\nlink = 'lte'\npattern = 'commuter'\n",
            "waves must rise",
        ),
        ("name = 'x\n", "not valid TOML"),
    ],
)
def test_bad_scenarios_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert message in str(e.value) and str(p) in str(e.value)


def test_missing_scenario_lists_the_ready_ones() -> None:
    with pytest.raises(ScenarioError, match="ready: .*city_lte"):
        load_scenario("no_such_fleet")


@pytest.mark.alone  # timed
def test_sizes_come_from_the_real_artifacts(sizes_cache: Path) -> None:
    strategies = [
        "alexnet_fp32",
        "squeezenet_fp32",
        "squeezenet_deep_compression",
        "squeezenet_delta",
    ]
    sizes = ProjectArtifacts(sizes_cache).sizes(strategies)
    lineage = build_lineage()
    base, head = lineage["base"].read_bytes(), lineage["head"].read_bytes()
    assert sizes["squeezenet_fp32"].nbytes == len(base)
    t = time.perf_counter()
    deep_compression = codecs.encode("deepcompression", base)
    encode_s = time.perf_counter() - t
    assert sizes["squeezenet_deep_compression"].nbytes == len(deep_compression)
    assert (
        sizes["alexnet_fp32"].nbytes == ALEXNET_BYTES and "Iandola" in sizes["alexnet_fp32"].source
    )
    # The delta is what the registry would serve a vehicle on v1.0: it rebuilds the new version.
    delta = min(
        (e for e in codecs.best_encoding(head, {"v1.0": base}, only=CODECS) if e.base_id),
        key=lambda e: e.size,
    )
    assert (
        sizes["squeezenet_delta"].nbytes == delta.size < sizes["squeezenet_deep_compression"].nbytes
    )
    assert codecs.decode(delta.blob, base) == head
    assert "head" in sizes["squeezenet_delta"].source
    # Served from the cache, not re-encoded: far quicker than the one encoding timed above, in
    # the same run (so a busy machine slows both alike; the cached read is ~100x quicker).
    cached_s = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        assert ProjectArtifacts(sizes_cache).sizes(strategies) == sizes
        cached_s = min(cached_s, time.perf_counter() - t)
    assert cached_s < encode_s / 5, (cached_s, encode_s)


def test_unknown_strategies_are_refused(sizes_cache: Path) -> None:
    with pytest.raises(UnknownStrategyError, match="carrier_pigeon"):
        ProjectArtifacts(sizes_cache).sizes(["carrier_pigeon"])
    with pytest.raises(UnknownStrategyError, match="have"):
        StaticSizes({"a": 1}).sizes(["b"])


def test_the_default_retry_model_is_the_agents_policy() -> None:
    from simulator.scenario import Protocol
    from vehicle_agent.download import RetryPolicy

    pr, policy = Protocol(), RetryPolicy()
    assert (pr.retry_attempts, pr.retry_base_s, pr.retry_factor, pr.retry_cap_s) == (
        policy.attempts,
        policy.base_s,
        policy.factor,
        policy.cap_s,
    )
