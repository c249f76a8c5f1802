"""A rollback campaign to a lower release counter is refused up front, naming `ota rerelease`
(issue 12, item 2): accepted, it would be reported as a rollback attack by every car."""

from __future__ import annotations

from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec
from testkit.helpers import publish_released, with_provenance
from tests.cli_helpers import ota_cli, publisher_args

MODEL = "squeezenet1.0"


def test_rollback_below_the_running_counter_is_refused_until_rereleased(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    reg, m = registry_server.registry, registry_server.manager
    publish_released(reg, MODEL, "1.0.0", squeezenet_bytes)
    cars = [make_agent(f"car-{i}", tags=("fleet=t",)) for i in range(2)]
    for car in cars:
        assert [o.status for o in car.update_once()] == ["installed"]
    reg.publish_bytes(MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    cid = m.create(
        CampaignSpec(
            "new", MODEL, "1.0.1", TargetSelection(tags=("fleet=t",)), waves=(WaveSpec(100),)
        )
    ).campaign_id
    for car in cars:
        assert [o.version for o in car.update_once()] == ["1.0.1"]
    args = publisher_args(registry_server)

    refused = ota_cli("campaign", "rollback", cid, "--to", "1.0.0", *args, ok=False)

    assert (
        "release counter 1" in refused
        and "below 2" in refused
        and f"ota rerelease {MODEL} 1.0.0" in refused
    )
    assert m.view(cid).state != "aborted", "a refused rollback leaves the campaign as it was"
    assert all(car.update_once() == [] for car in cars)
    reg.rerelease(MODEL, "1.0.0")
    ota_cli("campaign", "rollback", cid, "--to", "1.0.0", *args)
    for car in cars:
        [back] = car.update_once()
        assert (back.status, back.version) == ("installed", "1.0.0"), back.reason
