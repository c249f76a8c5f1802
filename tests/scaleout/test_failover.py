"""Failover: kill -9 a replica while a campaign's vehicles download from it; nothing is lost."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter

import pytest

from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec
from tests.scaleout.conftest import vehicle_config
from tests.scaleout.helpers import heavy_onnx
from vehicle_agent.agent import UpdateOutcome, VehicleAgent

pytestmark = pytest.mark.postgres

AGENTS = 4
MODEL_MB = 8  # its smallest encoding (~7 MB) outgrows what gRPC buffers ahead of a slow reader
_BROKE = re.compile(r"download of \S+ broke at (\d+) B")


def test_kill_a_replica_mid_download_every_agent_finishes(
    cluster, pg_registry, keys_dir, tmp_path, caplog, pki
) -> None:
    caplog.set_level(logging.INFO, logger="vehicle_agent")
    replicas = cluster(3)
    pg_registry.publish_bytes("heavy", "1.0.0", heavy_onnx(MODEL_MB))
    cars = tuple(f"car-{i}" for i in range(AGENTS))
    campaign = pg_registry.rollouts.create(
        CampaignSpec(
            "failover", "heavy", "1.0.0", TargetSelection(vehicle_ids=cars), waves=(WaveSpec(100),)
        )
    ).campaign_id
    # A first install downloads the smallest stand-alone encoding when there is one.
    kind = "encoding" if pg_registry.store.list_encodings("heavy", "1.0.0") else "target"
    everyone = ",".join(r.address for r in replicas)
    outcomes: dict[str, list[UpdateOutcome]] = {}
    errors: list[BaseException] = []

    progress: dict[str, float] = {}

    def slow_link(vehicle_id: str, done: int, total: int) -> None:
        progress[vehicle_id] = done / total
        time.sleep(0.05)  # a vehicle reading a chunk at a time keeps its stream open on the replica

    def drive(vehicle_id: str) -> None:
        agent = VehicleAgent(
            vehicle_config(pki, keys_dir, everyone, tmp_path / vehicle_id, vehicle_id)
        )
        try:
            outcomes[vehicle_id] = agent.update_once(
                progress=lambda _, d, t: slow_link(vehicle_id, d, t)
            )
        except BaseException as e:
            errors.append(e)
        finally:
            agent.close()

    threads = [threading.Thread(target=drive, args=(f"car-{i}",)) for i in range(AGENTS)]
    for t in threads:
        t.start()
    # Wait until downloads are well under way, then kill the replica serving the most of them.
    deadline = time.monotonic() + 30
    in_flight: list[float] = []
    while time.monotonic() < deadline:
        if sum(0.05 < f < 0.45 for f in progress.values()) >= AGENTS // 2:
            in_flight = [
                r.metric("ota_registry_downloads_in_flight", {"kind": kind}) for r in replicas
            ]
            if max(in_flight) >= 1:
                break
        time.sleep(0.02)
    victim = max(range(3), key=lambda i: in_flight[i])
    assert in_flight[victim] >= 1, (
        f"no download in flight to interrupt: {in_flight}, progress {progress}"
    )
    replicas[victim].kill()
    for t in threads:
        t.join(120)

    assert errors == []
    assert {v: [(o.status, o.version) for o in out] for v, out in outcomes.items()} == {
        f"car-{i}": [("installed", "1.0.0")] for i in range(AGENTS)
    }, {v: [o.reason for o in out] for v, out in outcomes.items()}
    # Downloads were cut part-way and resumed from the bytes on disk, on the other replicas.
    cut_at = [int(m.group(1)) for rec in caplog.records if (m := _BROKE.search(rec.getMessage()))]
    assert any(n > 0 for n in cut_at), (
        f"no download was cut part-way (victim had {in_flight[victim]} in flight)"
    )
    survivors = [r for i, r in enumerate(replicas) if i != victim]
    resumed = sum(
        r.metric("ota_registry_download_resumes_total", {"kind": kind}) for r in survivors
    )
    assert resumed >= sum(n > 0 for n in cut_at)
    # Every vehicle's report reached the shared database exactly once.
    installed = Counter(
        r.vehicle_id for r in pg_registry.store.list_reports() if r.status == "installed"
    )
    assert installed == Counter({f"car-{i}": 1 for i in range(AGENTS)})
    # The campaign, derived from the shared database, counts every vehicle once.
    view = pg_registry.rollouts.view(campaign)
    [wave] = view.waves
    assert (
        view.state == "completed" and sum(wave.counts.values()) == wave.successes(False) == AGENTS
    ), wave.counts
    counts = {state: n for state, n in wave.counts.items() if n}
    deadline = time.monotonic() + 5  # each replica re-derives its cached view every second
    exported: list[float] = []
    while time.monotonic() < deadline:
        exported = [
            {
                st: r.metric("ota_campaign_vehicles", {"campaign": campaign, "state": st})
                for st in counts
            }
            for r in survivors
        ]
        if exported == [counts] * len(survivors):
            break
        time.sleep(0.2)
    assert exported == [counts] * len(survivors), (
        "every surviving replica exports the same progress"
    )
