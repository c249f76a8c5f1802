"""The director's state through the MetadataStore contract, on every engine (issue 4)."""

from __future__ import annotations

import pytest

from server.storage import ManifestRecord, StorageError


def test_per_vehicle_metadata_is_versioned_and_immutable(stores) -> None:
    s = stores.meta
    s.put_vehicle_metadata("car-1", "targets", 1, b"t1")
    s.put_vehicle_metadata("car-1", "targets", 2, b"t2")
    s.put_vehicle_metadata("car-2", "targets", 1, b"other")
    assert s.get_vehicle_metadata("car-1", "targets") == b"t2"
    assert s.get_vehicle_metadata("car-1", "targets", 1) == b"t1"
    assert s.get_vehicle_metadata("car-3", "targets") is None
    with pytest.raises(StorageError, match="already exists"):
        s.put_vehicle_metadata("car-1", "targets", 2, b"forged")
    assert stores.open_another().get_vehicle_metadata("car-1", "targets") == b"t2"


def test_assignments_set_replace_clear(stores) -> None:
    s = stores.meta
    s.set_assignment("car-1", "m", "1.0.0")
    s.set_assignment("car-1", "m", "1.0.1")
    s.set_assignment("car-1", "n", "2.0.0")
    assert s.get_assignments("car-1") == {"m": "1.0.1", "n": "2.0.0"}
    s.set_assignment("car-1", "n", None)
    assert s.get_assignments("car-1") == {"m": "1.0.1"} and s.get_assignments("car-2") == {}


def test_manifest_counter_only_goes_up(stores) -> None:
    s = stores.meta
    assert s.accept_manifest(ManifestRecord("car-1", "ecu", 5, '{"a": 1}', ("x",)))
    assert not s.accept_manifest(ManifestRecord("car-1", "ecu", 5, "{}", ())), "a replay"
    assert not s.accept_manifest(ManifestRecord("car-1", "ecu", 4, "{}", ())), "an older manifest"
    got = s.get_manifest("car-1")
    assert got is not None and (got.counter, got.manifest_json, got.attacks) == (
        5,
        '{"a": 1}',
        ("x",),
    )
    assert s.accept_manifest(ManifestRecord("car-1", "ecu2", 6, "{}", ()))
    assert stores.open_another().get_manifest("car-1").hardware_id == "ecu2"
