"""Publish is not release (issue 12, items 1-2), over real gRPC and the real `ota` CLI.

Publishing stores and signs; a vehicle installs only what a release (``ota release``)
or a campaign sends it. A version below the highest published is refused unless the
publisher asks for the downgrade, with who and why recorded. Rollbacks and director
assignments to a lower release counter are refused up front, naming ``ota rerelease``.
"""

from __future__ import annotations

import pytest

from server.client import PublishError
from testkit.helpers import publish_released, with_provenance
from tests.cli_helpers import ota_cli, publisher_args

NAME = "squeezenet1.0"


def test_publish_alone_installs_nowhere_until_released(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    with registry_server.publisher() as pub:
        pub.upload(squeezenet_bytes, NAME, "1.0.0")
    plain, tagged, named = (
        make_agent("car-1"),
        make_agent("car-2", tags=("fleet=eu",)),
        make_agent("car-3"),
    )

    assert [plain.update_once(), tagged.update_once(), named.update_once()] == [[], [], []]
    assert plain.models == {} and registry_server.registry.store.list_reports("car-1") == []

    out = ota_cli("release", NAME, "1.0.0", "--vehicle", "car-3", *publisher_args(registry_server))
    assert "released squeezenet1.0 1.0.0 to vehicle car-3" in out
    assert [o.status for o in named.update_once()] == ["installed"]
    assert plain.update_once() == [] and tagged.update_once() == []

    ota_cli("release", NAME, "1.0.0", "--tag", "fleet=eu", *publisher_args(registry_server))
    assert [o.status for o in tagged.update_once()] == ["installed"]
    assert plain.update_once() == []

    ota_cli(
        "release",
        NAME,
        "1.0.0",
        "--fleet",
        "--reason",
        "canaries fine",
        *publisher_args(registry_server),
    )
    assert [o.status for o in plain.update_once()] == ["installed"]
    with registry_server.publisher() as pub:
        # ListReleases pages (AIP-158); the client follows next_page_token to the end.
        whole = pub.releases(NAME, page_size=0)
        assert pub.releases(NAME, page_size=1) == whole and len(whole) == 3
        assert [(r.kind, r.scope) for r in whole] == [
            ("release", "vehicle:car-3"),
            ("release", "tag:fleet=eu"),
            ("release", "fleet"),
        ]
        assert all(r.at > 1.6e9 for r in whole), "create_time carries the instant"
    log = ota_cli("releases", NAME, *publisher_args(registry_server))
    assert (
        "vehicle car-3" in log
        and "tagged fleet=eu" in log
        and "fleet" in log
        and "canaries fine" in log
    )
    assert "ml-team" in log  # who released, from the publisher's certificate


def test_release_needs_a_scope_and_a_published_version(registry_server, squeezenet_bytes) -> None:
    args = publisher_args(registry_server)
    res = ota_cli("release", NAME, "1.0.0", *args, ok=False)
    assert "--fleet, --tag K=V or --vehicle ID" in res
    res = ota_cli("release", NAME, "9.9.9", "--fleet", *args, ok=False)
    assert "not published" in res and "ota models" in res
    res = ota_cli("release", NAME, "1.0.0", "--tag", "nokeyvalue", *args, ok=False)
    assert "K=V" in res


def test_a_newer_publish_waits_for_its_own_release(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    car = make_agent()
    assert [o.version for o in car.update_once()] == ["1.0.0"]
    reg.publish_bytes(NAME, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))

    assert car.update_once() == []  # 1.0.0 stays released; 1.0.1 is only published

    reg.release(NAME, "1.0.1")
    assert [o.version for o in car.update_once()] == ["1.0.1"]


def test_downgrade_is_refused_unless_asked_for_and_recorded(
    registry_server, squeezenet_bytes, tmp_path
) -> None:
    with registry_server.publisher() as pub:
        pub.upload(squeezenet_bytes, NAME, "1.3.0")
        with pytest.raises(
            PublishError, match=r"FAILED_PRECONDITION.*0\.8\.0 is below 1\.3\.0.*--allow-downgrade"
        ):
            pub.upload(with_provenance(squeezenet_bytes, "old"), NAME, "0.8.0")
        assert [v.version for v in pub.list()] == ["1.3.0"]

    model = tmp_path / "old.onnx"
    model.write_bytes(with_provenance(squeezenet_bytes, "old"))
    publish = [
        "publish",
        str(model),
        "--name",
        NAME,
        "--version",
        "0.8.0",
        *publisher_args(registry_server),
    ]
    refused = ota_cli(*publish, ok=False)
    assert "0.8.0 is below 1.3.0" in refused and "--allow-downgrade" in refused
    no_reason = ota_cli(*publish, "--allow-downgrade", ok=False)
    assert "--reason" in no_reason
    ota_cli(*publish, "--allow-downgrade", "--reason", "1.x misreads stop signs")

    with registry_server.publisher() as pub:
        assert sorted(v.version for v in pub.list()) == ["0.8.0", "1.3.0"]
    log = ota_cli("releases", NAME, *publisher_args(registry_server))
    assert (
        "downgrade" in log
        and "0.8.0" in log
        and "ml-team" in log
        and "1.x misreads stop signs" in log
    )


def test_director_assign_to_a_lower_counter_is_refused_naming_rerelease(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    publish_released(reg, NAME, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    car = make_agent()
    assert [o.version for o in car.update_once()] == ["1.0.1"]
    args = publisher_args(registry_server)

    refused = ota_cli("director", "assign", "car-1", NAME, "1.0.0", *args, ok=False)

    assert "release counter 1" in refused and "car-1 runs 2" in refused
    assert f"ota rerelease {NAME} 1.0.0" in refused
    reg.rerelease(NAME, "1.0.0")
    ota_cli("director", "assign", "car-1", NAME, "1.0.0", *args)
    [back] = car.update_once()
    assert (back.status, back.version) == ("installed", "1.0.0")
