"""The Fleet API and the audit log over real gRPC with mutual TLS, real agents and real certificates."""

from __future__ import annotations

import json

import grpc
import pytest

from otawire.v1 import fleet_pb2, fleet_pb2_grpc, ota_pb2
from server.audit import AuditLog
from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec
from server.campaigns.service import CampaignClient
from server.client import PublishError
from server.fleet_service import FleetClient, FleetError
from testkit.helpers import publish_released, with_provenance

MODEL = "squeezenet1.0"


@pytest.fixture
def fleet(registry_server, make_agent, squeezenet_bytes):
    publish_released(registry_server.registry, MODEL, "1.0.0", squeezenet_bytes)
    cars = [
        make_agent(f"car-{i}", tags=(f"fleet={'north' if i < 2 else 'south'}",)) for i in range(3)
    ]
    for a in cars:
        assert a.update_once()[0].status == "installed"
    return cars


def test_list_vehicles_filters_and_pages(registry_server, fleet) -> None:
    with FleetClient(registry_server.address, tls_files=registry_server.publisher_tls) as c:
        everyone = c.vehicles()
        assert [v.vehicle_id for v in everyone] == ["car-0", "car-1", "car-2"]
        v = everyone[0]
        assert (
            v.name == "vehicles/car-0"
            and v.hardware_id == "generic-x86_64"
            and list(v.tags) == ["fleet=north"]
        )
        assert [(m.model, m.installed_version, m.active_version) for m in v.models] == [
            (MODEL, "1.0.0", "1.0.0")
        ]
        assert v.last_report.status in (
            ota_pb2.INSTALL_STATUS_INSTALLED,
            ota_pb2.INSTALL_STATUS_CONFIRMED,
        )
        assert v.last_seen_time.seconds > 0
        assert [v.vehicle_id for v in c.vehicles('tags.fleet = "north"', page_size=1)] == [
            "car-0",
            "car-1",
        ]
        assert c.vehicle("car-2").tags == ["fleet=south"]
        with pytest.raises(FleetError, match="refused \\(NOT_FOUND\\): no vehicle 'car-9'") as e:
            c.vehicle("car-9")
        assert e.value.failure.refused
        with pytest.raises(FleetError, match="unknown field 'colour'"):
            c.vehicles("colour = red")
    with registry_server.channel() as ch:
        stub = fleet_pb2_grpc.FleetStub(ch)
        first = stub.ListVehicles(fleet_pb2.ListVehiclesRequest(page_size=2))
        assert len(first.vehicles) == 2 and first.total_size == 3 and first.next_page_token
        rest = stub.ListVehicles(
            fleet_pb2.ListVehiclesRequest(page_size=2, page_token=first.next_page_token)
        )
        assert [v.vehicle_id for v in rest.vehicles] == ["car-2"] and not rest.next_page_token
        with pytest.raises(grpc.RpcError) as err:  # a token made for another filter
            stub.ListVehicles(
                fleet_pb2.ListVehiclesRequest(page_token=first.next_page_token, filter="tags:fleet")
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with registry_server.channel("vehicle", "car-0") as ch, pytest.raises(grpc.RpcError) as err:
        fleet_pb2_grpc.FleetStub(ch).ListVehicles(fleet_pb2.ListVehiclesRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, "a vehicle may not read the fleet"


def test_every_change_is_audited_with_the_certificates_actor(
    registry_server, fleet, squeezenet_bytes, caplog
) -> None:
    caplog.set_level("INFO", logger="server.audit")
    address, tls_pub = registry_server.address, registry_server.publisher_tls
    with registry_server.publisher() as pub:
        pub.upload(with_provenance(squeezenet_bytes, "1.0.1"), MODEL, "1.0.1", keys=None)
        pub.assign("car-0", MODEL, "1.0.0")
        with pytest.raises(PublishError, match="refused"):
            pub.assign(
                "car-0", "no-such-model", "9.9.9"
            )  # refused: changed nothing, so not audited
    with CampaignClient(address, tls_files=tls_pub) as cc:
        cid = cc.create(
            CampaignSpec(
                "audit",
                MODEL,
                "1.0.1",
                TargetSelection(tags=("fleet=south",)),
                waves=(WaveSpec(100, 1.0, 0.0),),
            )
        ).campaign_id
        cc.pause(cid, "looking")
        cc.abort(cid, "enough")
    with FleetClient(address, tls_files=tls_pub) as c:
        entries = c.audit()
        actions = [e.action for e in entries]
        assert actions == [
            "campaign.abort",
            "campaign.pause",
            "campaign.create",
            "director.assign",
            "publish",
        ]
        assert {e.actor for e in entries} == {"publisher:ml-team"}
        publish = json.loads(entries[-1].arguments_json)
        assert (
            publish["name"] == MODEL
            and publish["version"] == "1.0.1"
            and int(publish["length"]) > 5_000_000
        )
        assert json.loads(entries[1].arguments_json) == {
            "name": f"campaigns/{cid}",
            "reason": "looking",
            "campaign_id": cid,
        }
        assert entries[0].create_time.seconds >= entries[-1].create_time.seconds
        assert [e.action for e in c.audit(actor="publisher:ml-team", action="campaign.create")] == [
            "campaign.create"
        ]
        paged = c.audit(limit=5)
        assert [e.name for e in paged] == [e.name for e in entries]
    lines = [r.getMessage() for r in caplog.records if r.name == "server.audit"]
    assert len(lines) == 5 and lines[0].startswith("audit: publish by publisher:ml-team")
    # Append-only and durable: a fresh log over the same store reads the same entries.
    again = AuditLog(registry_server.registry.store).list(limit=10)
    assert [e.action for e in again] == actions
