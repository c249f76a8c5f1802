"""Fixtures for the simulator tests: small fleets, sizes measured once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from simulator.scenario import Scenario, load_scenario, scenario_from_dict
from simulator.sizes import ProjectArtifacts


@pytest.fixture(scope="session")
def sizes_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A size cache filled once: the real artifacts take seconds to build and encode."""
    d = tmp_path_factory.mktemp("sizes")
    ProjectArtifacts(d).sizes(["squeezenet_fp32", "squeezenet_delta"])
    return d


def _tiny(**campaign: object) -> Scenario:
    """A two-link fleet with short spells, so that windows matter even for small packages."""
    camp = {
        "waves": [0.1, 1.0],
        "advance_share": 0.8,
        "soak_hours": 1.0,
        "install_failure_rate": 0.01,
    }
    camp.update(campaign)
    return scenario_from_dict(
        {
            "name": "tiny",
            "seed": 3,
            "vehicles": 4000,
            "horizon_days": 7,
            "protocol": {"session_overhead_bytes": 4096, "resume_overhead_bytes": 1024},
            "campaign": camp,
            "patterns": {
                "short": {
                    "base": "commuter",
                    "hourly": [],
                    "on_mean_min": 20,
                    "off_mean_min": 120,
                    "dormant_share": 0.02,
                }
            },
            "fleet": [
                {"share": 0.5, "link": "3g", "pattern": "short"},
                {"share": 0.5, "link": "satellite", "pattern": "short"},
            ],
        }
    )


@pytest.fixture
def tiny() -> Callable[..., Scenario]:
    """Factory of small scenarios; keyword arguments override the campaign."""
    return _tiny


@pytest.fixture
def city() -> Scenario:
    return load_scenario("city_lte")
