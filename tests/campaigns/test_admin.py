"""The Campaigns admin API and ``ota campaign`` over real gRPC; rate limit, timeouts, pause/resume.

Vehicles here are bare gRPC clients (check-in and report only): the install path
itself is covered with real agents in test_fleet.py.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ota.cli import cli
from otawire import tls
from otawire.v1 import campaigns_pb2, ota_pb2
from otawire.wire import CAMPAIGN_EVENT_KIND, to_str
from server.campaigns.manager import CampaignManager
from server.campaigns.rollout import CampaignSpec, TargetSelection, Threshold, WaveSpec
from server.campaigns.service import CampaignClient, CampaignError
from testkit.helpers import with_provenance
from vehicle_agent.transport import RegistryClient

MODEL = "squeezenet1.0"


@pytest.fixture
def published(registry_server, squeezenet_bytes):
    """1.0.0 is what the vehicles run; 1.0.1 is published but held until a campaign sends it."""
    reg = registry_server.registry
    return reg.publish_bytes(MODEL, "1.0.0", squeezenet_bytes), reg.publish_bytes(
        MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1")
    )


class Vehicles:
    """Bare check-ins and reports for many vehicle ids, each over its own mutual-TLS channel."""

    def __init__(self, registry_server, base) -> None:
        self.server = registry_server
        self.clients: dict[str, RegistryClient] = {}
        self.base = base

    def client(self, vid: str) -> RegistryClient:
        if vid not in self.clients:
            self.clients[vid] = RegistryClient(
                self.server.address, tls_files=self.server.vehicle_tls(vid)
            )
        return self.clients[vid]

    def check(self, vid: str, tags=("fleet=a",)) -> list[str]:
        req = ota_pb2.CheckForUpdateRequest(
            vehicle_id=vid,
            hardware_id="ecu",
            tags=list(tags),
            installed=[
                ota_pb2.InstalledModel(
                    name=MODEL, version=self.base.version, sha256=self.base.sha256
                )
            ],
        )
        return [o.version for o in self.client(vid).check(req).offers]

    def report(self, vid: str, status: int, reason: str = "") -> None:
        self.client(vid).report(
            ota_pb2.ReportInstallRequest(
                vehicle_id=vid,
                name=MODEL,
                version="1.0.1",
                status=status,
                reason=reason,
                from_version="1.0.0",
                active_version="1.0.1",
            )
        )

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


@pytest.fixture
def vehicles(registry_server, published):
    v = Vehicles(registry_server, published[0])
    yield v
    v.close()


def test_rate_limit_timeout_pause_and_resume(registry_server, vehicles, clock) -> None:
    ids = [f"v{i}" for i in range(5)]
    for vid in ids:  # the inventory learns them at check-in; 1.0.1 is not theirs yet
        assert vehicles.check(vid) == []
    vehicles.check("other", tags=("fleet=b",))
    with CampaignClient(registry_server.address, tls_files=registry_server.publisher_tls) as admin:
        st = admin.create(
            CampaignSpec(
                "rate",
                MODEL,
                "1.0.1",
                TargetSelection(tags=("fleet=a",)),
                waves=(WaveSpec(100),),
                max_concurrent_downloads=2,
                timeout_s=300,
                threshold=Threshold(trip_failures=1, trip_failure_share=0, action="pause"),
            )
        )
        assert st.vehicles == 5 and st.state == campaigns_pb2.CAMPAIGN_STATE_RUNNING
        offers = {vid: vehicles.check(vid) for vid in ids}
        offered = [v for v, o in offers.items() if o == ["1.0.1"]]
        assert len(offered) == 2, f"at most 2 concurrent downloads, got {offers}"
        assert vehicles.check(offered[0]) == ["1.0.1"], "a vehicle under way keeps its offer"
        assert vehicles.check("other", tags=("fleet=b",)) == []
        vehicles.report(offered[0], ota_pb2.INSTALL_STATUS_INSTALLED)
        third = [v for v in ids if v not in offered and vehicles.check(v) == ["1.0.1"]]
        assert len(third) == 1, "one slot freed by the install report"
        # offered[1] and the third go silent; after the timeout they count as failures and trip the pause.
        clock.advance(301)
        st = admin.get(st.campaign_id)
        assert st.state == campaigns_pb2.CAMPAIGN_STATE_PAUSED and "timed_out" in st.state_reason
        [group] = st.failures
        assert (
            group.status == ota_pb2.INSTALL_STATUS_TIMED_OUT
            and group.count == 2
            and "no result 300 s after the offer" in group.reason
        )
        rest = [v for v in ids if v not in offered + third]
        assert all(vehicles.check(v) == [] for v in rest), "paused: nobody new is offered"
        with pytest.raises(CampaignError, match="FAILED_PRECONDITION.*paused: cannot pause"):
            admin.pause(st.campaign_id)
        st = admin.resume(st.campaign_id, "link outage in the test depot, not the model")
        assert st.state == campaigns_pb2.CAMPAIGN_STATE_RUNNING
        assert [vehicles.check(v) for v in rest] == [["1.0.1"], ["1.0.1"]], (
            "timed-out vehicles free their slots"
        )
        assert vehicles.check(third[0]) == ["1.0.1"], (
            "a timed-out vehicle that comes back may still finish"
        )
        vehicles.report(
            offered[1], ota_pb2.INSTALL_STATUS_FAILED, "self-test failed: top-1 is 1, expected 2"
        )
        st = admin.get(st.campaign_id)
        assert st.state == campaigns_pb2.CAMPAIGN_STATE_PAUSED and "1 failed" in st.state_reason, (
            "a new failure after the resume trips again"
        )
        st = admin.abort(st.campaign_id, "enough")
        kinds = [to_str(CAMPAIGN_EVENT_KIND, e.kind) for e in st.events]
        assert kinds == ["created", "wave_opened", "paused", "resumed", "paused", "aborted"]
        assert st.state == campaigns_pb2.CAMPAIGN_STATE_ABORTED and st.state_reason == "enough"


def test_bad_requests_get_clear_errors(registry_server, vehicles) -> None:
    with CampaignClient(registry_server.address, tls_files=registry_server.publisher_tls) as admin:
        with pytest.raises(CampaignError, match="INVALID_ARGUMENT.*must reach 100%"):
            admin.create(CampaignSpec("x", MODEL, "1.0.1", waves=(WaveSpec(10),)))
        with pytest.raises(CampaignError, match="NOT_FOUND.*squeezenet1.0 9.9.9 is not published"):
            admin.create(CampaignSpec("x", MODEL, "9.9.9"))
        with pytest.raises(CampaignError, match="NOT_FOUND.*no campaign 'nope'"):
            admin.get("nope")
        with pytest.raises(CampaignError, match="FAILED_PRECONDITION.*matches no vehicle"):
            admin.create(CampaignSpec("x", MODEL, "1.0.1", TargetSelection(tags=("fleet=typo",))))
        vehicles.check("v0")
        admin.create(CampaignSpec("first", MODEL, "1.0.1"))
        with pytest.raises(CampaignError, match="ALREADY_EXISTS.*still running"):
            admin.create(CampaignSpec("second", MODEL, "1.0.1"))


def test_cli_create_status_list_json(registry_server, vehicles, clock) -> None:
    for vid in ("v0", "v1", "v2", "v3"):
        vehicles.check(vid)
    runner = CliRunner()
    pub = registry_server.publisher_tls
    addr = [
        "--registry",
        registry_server.address,
        "--ca",
        str(pub.ca),
        "--cert",
        str(pub.cert),
        "--key",
        str(pub.key),
    ]
    res = runner.invoke(
        cli,
        [
            "campaign",
            "create",
            "--model",
            MODEL,
            "--version",
            "1.0.1",
            "--fleet",
            "a",
            "--waves",
            "25,100",
            "--soak",
            "60",
            "--success-share",
            "1",
            "--json",
            *addr,
        ],
    )
    assert res.exit_code == 0, res.output
    created = json.loads(res.output)
    cid = created["campaign_id"]
    assert created["spec"]["target"]["tags"] == ["fleet=a"] and [
        w["size"] for w in created["waves"]
    ] == [1, 3]
    [canary] = [v for v in ("v0", "v1", "v2", "v3") if vehicles.check(v) == ["1.0.1"]]
    vehicles.report(canary, ota_pb2.INSTALL_STATUS_INSTALLED)

    res = runner.invoke(cli, ["campaign", "status", cid, *addr], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert (
        cid in res.output
        and "RUNNING" in res.output
        and "1/1" in res.output
        and "0/3" in res.output
    )
    assert "━" in res.output, "a progress bar per wave"
    # Paused by another operator: each event carries the identity its certificate proved.
    oncall = tls.ensure(registry_server.pki, "publisher", "oncall")
    oncall_addr = [*addr[:2], "--ca", str(oncall.ca), "--cert", str(oncall.cert)]
    oncall_addr += ["--key", str(oncall.key)]
    res = runner.invoke(
        cli, ["campaign", "pause", cid, "--reason", "lunch", "--json", *oncall_addr]
    )
    assert json.loads(res.output)["state"] == "CAMPAIGN_STATE_PAUSED"
    res = runner.invoke(cli, ["campaign", "list", "--json", *addr])
    assert [(c["campaign_id"], c["state"]) for c in json.loads(res.output)] == [
        (cid, "CAMPAIGN_STATE_PAUSED")
    ]
    res = runner.invoke(cli, ["campaign", "list", *addr], env={"COLUMNS": "160"})
    assert cid in res.output and "paused" in res.output
    res = runner.invoke(cli, ["campaign", "resume", cid, *addr])
    assert res.exit_code == 0 and "RUNNING" in res.output
    res = runner.invoke(cli, ["campaign", "rollback", cid, "--json", *addr])
    assert (
        res.exit_code != 0 and "ota rerelease squeezenet1.0 1.0.0" in res.output
    )  # a lower counter
    registry_server.registry.rerelease(MODEL, "1.0.0")
    res = runner.invoke(cli, ["campaign", "rollback", cid, "--json", *addr])
    assert res.exit_code == 0, res.output
    rb = json.loads(res.output)
    assert rb["spec"]["rollback_of"] == cid and rb["spec"]["version"] == "1.0.0"
    assert rb["spec"]["target"]["vehicle_ids"] == [canary]
    with CampaignClient(registry_server.address, tls_files=registry_server.publisher_tls) as admin:
        # ListCampaigns pages (AIP-158): one per page here, each campaign once. The clock
        # may give both the same created_at, and then the random id breaks the tie: a set.
        listed = [c.campaign_id for c in admin.list(page_size=1)]
        assert sorted(listed) == sorted([cid, rb["campaign_id"]])
        assert rb["name"] == f"campaigns/{rb['campaign_id']}"
    res = runner.invoke(cli, ["campaign", "resume", cid, *addr])
    assert res.exit_code != 0 and "aborted: cannot resume it" in res.output
    # Who did what, in the campaign's own history (issue 13): JSON and the text view.
    st = json.loads(runner.invoke(cli, ["campaign", "status", cid, "--json", *addr]).output)

    def kind(e: dict) -> str:  # proto JSON names the enum value
        return e["kind"].removeprefix("CAMPAIGN_EVENT_KIND_").lower()

    assert [(kind(e), e["actor"]) for e in st["events"]] == [
        ("created", "publisher:ml-team"),
        ("wave_opened", "publisher:ml-team"),
        ("paused", "publisher:oncall"),
        ("resumed", "publisher:ml-team"),
        ("aborted", "publisher:ml-team"),
        ("rolled_back", "publisher:ml-team"),
    ]
    assert json.loads(st["events"][-1]["detail"])["rollback"] == rb["campaign_id"]
    assert [(kind(e), e["actor"]) for e in rb["events"]][:1] == [("created", "publisher:ml-team")]
    res = runner.invoke(cli, ["campaign", "status", cid, *addr], env={"COLUMNS": "200"})
    history = res.output.split("history", 1)[1].splitlines()
    paused = next(line for line in history if " paused " in line)
    assert "publisher:oncall" in paused and "lunch" in paused, res.output
    assert any("rolled_back" in line and "publisher:ml-team" in line for line in history)


def test_a_result_frees_its_download_slot_before_the_next_refresh(
    registry_server, vehicles, clock
) -> None:
    # Production caches derived state for refresh_s; the rate limit must not wait for it.
    m = CampaignManager(registry_server.registry.store, clock=clock, refresh_s=3600)
    registry_server.registry.rollouts = m
    for vid in ("v0", "v1", "v2"):
        vehicles.check(vid)
    m.create(
        CampaignSpec(
            "slots",
            MODEL,
            "1.0.1",
            TargetSelection(tags=("fleet=a",)),
            waves=(WaveSpec(100),),
            max_concurrent_downloads=1,
        )
    )
    first = [v for v in ("v0", "v1", "v2") if vehicles.check(v) == ["1.0.1"]]
    assert len(first) == 1
    vehicles.report(first[0], ota_pb2.INSTALL_STATUS_INSTALLED)
    second = [v for v in ("v0", "v1", "v2") if v not in first and vehicles.check(v) == ["1.0.1"]]
    assert len(second) == 1, "the install report freed the slot at once"
    vehicles.report(second[0], ota_pb2.INSTALL_STATUS_FAILED, "self-test failed")
    assert vehicles.check(second[0]) == [], (
        "a vehicle that failed is not pushed again, even before a refresh"
    )
