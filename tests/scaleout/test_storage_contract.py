"""The storage contract: every protocol method, once per engine (SQLite and PostgreSQL).

Both ``MetadataStore``/``BlobStore`` implementations must pass this file
unchanged; a method added to the protocol gets its test here.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time

import pytest

from server.storage import (
    BlobNotFound,
    CampaignEventRecord,
    CampaignMember,
    CampaignRecord,
    EncodingRecord,
    ModelRecord,
    ReportRecord,
    StorageError,
    VehicleRecord,
)


def _model(
    name: str = "squeezenet1.0",
    version: str = "1.0.0",
    sha: str = "a" * 64,
    at: str = "2026-01-01T00:00:00Z",
    **kw,
) -> ModelRecord:
    return ModelRecord(name, version, sha, 1234, f"{name}/{version}.onnx", published_at=at, **kw)


# -- models ---------------------------------------------------------------------------
def test_model_round_trips_with_every_field(stores) -> None:
    rec = _model(hardware_ids=("ecu-a", "ecu-b"), metadata_json='{"kind": "classifier"}')
    stores.meta.add_model(rec)
    assert stores.meta.get_model("squeezenet1.0", "1.0.0") == rec
    assert stores.meta.get_model("squeezenet1.0", "9.9.9") is None
    assert stores.meta.get_model("other", "1.0.0") is None


def test_a_model_version_is_immutable(stores) -> None:
    stores.meta.add_model(_model())
    with pytest.raises(StorageError, match="squeezenet1.0 1.0.0 already exists"):
        stores.meta.add_model(_model(sha="b" * 64))
    assert stores.meta.get_model("squeezenet1.0", "1.0.0").sha256 == "a" * 64


def test_list_models_filters_by_name_in_publishing_order(stores) -> None:
    stores.meta.add_model(_model("squeezenet1.0", "1.0.1", at="2026-01-02T00:00:00Z"))
    stores.meta.add_model(_model("squeezedet", "0.1.0", at="2026-01-01T00:00:00Z"))
    stores.meta.add_model(_model("squeezenet1.0", "1.0.0", at="2026-01-01T00:00:00Z"))
    assert [r.version for r in stores.meta.list_models("squeezenet1.0")] == ["1.0.0", "1.0.1"]
    assert [(r.name, r.version) for r in stores.meta.list_models()] == [
        ("squeezedet", "0.1.0"),
        ("squeezenet1.0", "1.0.0"),
        ("squeezenet1.0", "1.0.1"),
    ]
    assert stores.meta.list_models("nothing") == []


def test_models_by_sha256_finds_every_version_with_those_bytes(stores) -> None:
    stores.meta.add_model(_model(version="1.0.0", sha="c" * 64))
    stores.meta.add_model(_model(version="1.0.1", sha="c" * 64))
    stores.meta.add_model(_model(version="1.0.2", sha="d" * 64))
    assert sorted(r.version for r in stores.meta.models_by_sha256("c" * 64)) == ["1.0.0", "1.0.1"]
    assert stores.meta.models_by_sha256("e" * 64) == []


# -- TUF metadata history -------------------------------------------------------------
def test_tuf_history_keeps_every_version_and_serves_the_newest(stores) -> None:
    for v in (1, 2, 9, 10):  # numeric order: 10 is newer than 9
        stores.meta.put_tuf_metadata("timestamp", v, f"ts{v}".encode())
    stores.meta.put_tuf_metadata("snapshot", 1, b"\x00binary\xff")
    assert stores.meta.get_tuf_metadata("timestamp") == b"ts10"
    assert stores.meta.get_tuf_metadata("timestamp", 9) == b"ts9"
    assert stores.meta.get_tuf_metadata("timestamp", 3) is None
    assert stores.meta.get_tuf_metadata("snapshot") == b"\x00binary\xff"
    assert stores.meta.get_tuf_metadata("targets") is None
    # one query tells the newest version of every role (the repository caches bytes by it)
    assert stores.meta.tuf_versions() == {"timestamp": 10, "snapshot": 1}


def test_a_signed_tuf_version_cannot_be_replaced(stores) -> None:
    stores.meta.put_tuf_metadata("targets", 1, b"first")
    with pytest.raises(StorageError, match="TUF targets version 1 already exists"):
        stores.meta.put_tuf_metadata("targets", 1, b"second")
    assert stores.meta.get_tuf_metadata("targets", 1) == b"first"


# -- transport encodings -----------------------------------------------------------------
def test_encodings_are_stored_per_version_and_replaced_as_a_set(stores) -> None:
    standalone = EncodingRecord("m", "1.0.1", "deepcompression", "", "1" * 64, 500)
    delta = EncodingRecord("m", "1.0.1", "tensordelta", "b" * 64, "2" * 64, 30)
    stores.meta.put_encodings("m", "1.0.1", [delta, standalone])
    stores.meta.put_encodings(
        "m", "1.0.2", [EncodingRecord("m", "1.0.2", "zstd", "", "3" * 64, 400)]
    )
    assert stores.meta.list_encodings("m", "1.0.1") == [standalone, delta]  # stand-alone first
    assert stores.meta.encoding_by_blob("2" * 64) == delta
    assert stores.meta.encoding_by_blob("4" * 64) is None
    stores.meta.put_encodings("m", "1.0.1", [standalone])  # a re-encode replaces the whole set
    assert stores.meta.list_encodings("m", "1.0.1") == [standalone]
    assert stores.meta.encoding_by_blob("2" * 64) is None
    stores.meta.put_encodings("m", "1.0.1", [])
    assert stores.meta.list_encodings("m", "1.0.1") == []
    assert [e.codec for e in stores.meta.list_encodings("m", "1.0.2")] == ["zstd"]


# -- reports ----------------------------------------------------------------------------
def test_reports_round_trip_in_arrival_order(stores) -> None:
    first = ReportRecord("car-1", "squeezenet1.0", "1.0.0", "downloading", bytes_downloaded=0)
    second = ReportRecord(
        "car-1",
        "squeezenet1.0",
        "1.0.0",
        "installed",
        reason="",
        hardware_id="ecu-a",
        sha256="f" * 64,
        from_version="0.9.0",
        encoding="full",
        bytes_downloaded=5_000_000,
        duration_s=1.25,
        active_version="1.0.0",
        extra={"slot": "b", "n": [1, 2]},
    )
    other = ReportRecord(
        "car-2", "squeezenet1.0", "1.0.0", "failed", reason="self-test failed: top-1 mismatch"
    )
    for rep in (first, second, other):
        stores.meta.add_report(rep)
    got = stores.meta.list_reports("car-1")
    assert [r.status for r in got] == ["downloading", "installed"]
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    assert all(stamp.match(r.received_at) for r in got), [r.received_at for r in got]
    assert got[1].__dict__ | {"received_at": ""} == second.__dict__
    assert [r.vehicle_id for r in stores.meta.list_reports()] == ["car-1", "car-1", "car-2"]
    assert stores.meta.list_reports("car-3") == []


def test_reports_from_many_threads_are_all_kept(stores) -> None:
    def send(i: int) -> None:
        for j in range(10):
            stores.meta.add_report(
                ReportRecord(f"car-{i}", "m", "1.0.0", "installed", extra={"j": j})
            )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reps = stores.meta.list_reports()
    assert len(reps) == 40
    for i in range(4):  # arrival order per vehicle survives
        assert [r.extra["j"] for r in stores.meta.list_reports(f"car-{i}")] == list(range(10))


# -- signing lock -------------------------------------------------------------------------
def test_signing_lock_is_reentrant(stores) -> None:
    with stores.meta.signing_lock(), stores.meta.signing_lock():
        stores.meta.put_tuf_metadata("timestamp", 1, b"ts1")
    assert stores.meta.get_tuf_metadata("timestamp") == b"ts1"


def test_signing_lock_admits_one_signer_at_a_time_across_store_instances(stores) -> None:
    """Two handles on the same data (two replicas, for PostgreSQL) never sign at once."""
    handles = [stores.meta] + (
        [stores.open_another()] if stores.engine == "postgresql" else [stores.meta]
    )
    inside, overlaps, versions = [0], [0], []
    guard = threading.Lock()

    def signer(store, k: int) -> None:
        for _ in range(5):
            with store.signing_lock():
                with guard:
                    inside[0] += 1
                    overlaps[0] += inside[0] > 1
                latest = store.get_tuf_metadata("timestamp")
                nxt = int(latest.decode()[2:]) + 1 if latest else 1
                time.sleep(0.002)  # widen the window a lost update would need
                store.put_tuf_metadata("timestamp", nxt, f"ts{nxt}".encode())
                versions.append(nxt)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=signer, args=(handles[k % 2], k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] == 0
    assert sorted(versions) == list(range(1, 21))  # no version signed twice, none skipped


# -- blobs ----------------------------------------------------------------------------------
def test_blob_round_trip_with_seeks_across_chunks(stores) -> None:
    data = os.urandom(600 * 1024 + 7)  # spans three 256 KiB chunks
    sha = stores.blobs.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert stores.blobs.exists(sha) and stores.blobs.size(sha) == len(data)
    with stores.blobs.open(sha) as f:
        assert f.read() == data
        f.seek(256 * 1024 - 3)
        assert f.read(10) == data[256 * 1024 - 3 : 256 * 1024 + 7]
        f.seek(len(data) - 5)
        assert f.read(100) == data[-5:]
        assert f.read(1) == b""
    assert stores.blobs.put_bytes(data) == sha  # content-addressed: storing again is a no-op


def test_empty_blob(stores) -> None:
    sha = stores.blobs.put_bytes(b"")
    assert stores.blobs.size(sha) == 0
    with stores.blobs.open(sha) as f:
        assert f.read() == b""


def test_put_file_stores_a_spooled_file_and_consumes_it(stores) -> None:
    data = os.urandom(300 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    fd, tmp = stores.blobs.tempfile()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    stores.blobs.put_file(tmp, sha)
    assert not tmp.exists()
    with stores.blobs.open(sha) as f:
        assert f.read() == data


def test_missing_or_malformed_blob_names_are_refused(stores) -> None:
    absent = "0" * 64
    assert not stores.blobs.exists(absent)
    with pytest.raises(BlobNotFound, match=absent):
        stores.blobs.open(absent)
    with pytest.raises(BlobNotFound, match=absent):
        stores.blobs.size(absent)
    for bad in ("../../etc/passwd", "A" * 64, "abc"):
        assert not stores.blobs.exists(bad)
        with pytest.raises(BlobNotFound, match="not a sha256 digest"):
            stores.blobs.open(bad)


def test_reports_for_one_model_version(stores) -> None:
    for vid, version in (("car-1", "1.0.0"), ("car-2", "1.0.1"), ("car-3", "1.0.1")):
        stores.meta.add_report(ReportRecord(vid, "m", version, "installed"))
    stores.meta.add_report(ReportRecord("car-4", "other", "1.0.1", "installed"))
    assert [r.vehicle_id for r in stores.meta.list_reports_for_model("m", "1.0.1")] == [
        "car-2",
        "car-3",
    ]
    assert stores.meta.list_reports_for_model("m", "9.9.9") == []


# -- fleet inventory --------------------------------------------------------------------------
def test_vehicle_upsert_keeps_first_seen_and_updates_the_rest(stores) -> None:
    first = VehicleRecord(
        "car-1", "ecu-a", ("eu", "beta"), {"m": ("1.0.0", "a" * 64)}, ("m",), 100.0, 100.0
    )
    stores.meta.upsert_vehicle(first)
    assert stores.meta.get_vehicle("car-1") == first
    later = VehicleRecord(
        "car-1",
        "ecu-b",
        ("eu",),
        {"m": ("1.0.1", "b" * 64), "n": ("2.0.0", "c" * 64)},
        (),
        999.0,
        150.5,
    )
    stores.meta.upsert_vehicle(later)
    assert stores.meta.get_vehicle("car-1") == VehicleRecord(
        "car-1",
        "ecu-b",
        ("eu",),
        {"m": ("1.0.1", "b" * 64), "n": ("2.0.0", "c" * 64)},
        (),
        100.0,
        150.5,
    )
    stores.meta.upsert_vehicle(VehicleRecord("car-0", first_seen=1.0, last_seen=1.0))
    assert [v.vehicle_id for v in stores.meta.list_vehicles()] == ["car-0", "car-1"]
    assert stores.meta.get_vehicle("car-9") is None


# -- rollout campaigns ----------------------------------------------------------------------
def _campaign(stores, cid: str = "c1", at: float = 10.0) -> list[CampaignMember]:
    members = [
        CampaignMember(cid, "car-2", 1),
        CampaignMember(cid, "car-1", 0),
        CampaignMember(cid, "car-3", 1),
    ]
    stores.meta.add_campaign(
        CampaignRecord(cid, '{"model": "m", "version": "1.0.1"}', at),
        members,
        [CampaignEventRecord(cid, at, "created"), CampaignEventRecord(cid, at, "wave_opened", 0)],
    )
    return members


def test_a_campaign_is_stored_with_its_members_and_first_events(stores) -> None:
    _campaign(stores, "c1", 10.0)
    _campaign(stores, "c0", 20.0)
    assert stores.meta.get_campaign("c1") == CampaignRecord(
        "c1", '{"model": "m", "version": "1.0.1"}', 10.0
    )
    assert stores.meta.get_campaign("nope") is None
    assert [c.campaign_id for c in stores.meta.list_campaigns()] == ["c1", "c0"]  # by creation time
    assert [
        (m.vehicle_id, m.wave, m.offered_at) for m in stores.meta.list_campaign_members("c1")
    ] == [("car-1", 0, None), ("car-2", 1, None), ("car-3", 1, None)]
    assert sorted(m.campaign_id for m in stores.meta.memberships_of("car-2")) == ["c0", "c1"]
    assert stores.meta.memberships_of("car-9") == []
    assert [(e.kind, e.wave) for e in stores.meta.list_campaign_events("c1")] == [
        ("created", -1),
        ("wave_opened", 0),
    ]


def test_adding_a_campaign_is_all_or_nothing(stores) -> None:
    _campaign(stores, "c1")
    with pytest.raises(StorageError, match="c1 already exists"):
        _campaign(stores, "c1")
    twice = [CampaignMember("c2", "car-1", 0), CampaignMember("c2", "car-1", 1)]
    with pytest.raises(StorageError, match="lists a vehicle twice"):
        stores.meta.add_campaign(
            CampaignRecord("c2", "{}", 1.0), twice, [CampaignEventRecord("c2", 1.0, "created")]
        )
    assert stores.meta.get_campaign("c2") is None
    assert (
        stores.meta.list_campaign_members("c2") == []
        and stores.meta.list_campaign_events("c2") == []
    )
    assert len(stores.meta.list_campaign_events("c1")) == 2


def test_only_the_first_offer_is_recorded_even_across_replicas(stores) -> None:
    _campaign(stores)
    other = stores.open_another()  # a second replica's handle on the same data
    results = []
    threads = [
        threading.Thread(target=lambda s=s, t=t: results.append(s.mark_offered("c1", "car-2", t)))
        for s, t in ((stores.meta, 5.0), (other, 6.0), (stores.meta, 7.0), (other, 8.0))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    [m] = [m for m in stores.meta.list_campaign_members("c1") if m.vehicle_id == "car-2"]
    assert m.offered_at in (5.0, 6.0, 7.0, 8.0)
    assert stores.meta.mark_offered("c1", "car-9", 9.0) is False  # not a member


def test_campaign_events_append_in_order(stores) -> None:
    _campaign(stores)
    for i, kind in enumerate(("paused", "resumed", "wave_opened")):
        stores.meta.add_campaign_event(
            CampaignEventRecord("c1", 20.0 + i, kind, 1, f'{{"n": {i}}}', f"publisher:op{i}")
        )
    events = stores.meta.list_campaign_events("c1")
    assert [e.kind for e in events] == [
        "created",
        "wave_opened",
        "paused",
        "resumed",
        "wave_opened",
    ]
    assert events[-1] == CampaignEventRecord(
        "c1", 22.0, "wave_opened", 1, '{"n": 2}', "publisher:op2"
    )
    assert [e.actor for e in events] == ["", "", "publisher:op0", "publisher:op1", "publisher:op2"]


def test_signing_locks_of_different_scopes_nest_and_commit_together(stores) -> None:
    with stores.meta.signing_lock():
        stores.meta.put_tuf_metadata("snapshot", 1, b"s1")
        with stores.meta.signing_lock("vehicle:car-1"), stores.meta.signing_lock():
            stores.meta.put_tuf_metadata("timestamp", 1, b"t1")
    assert (
        stores.meta.get_tuf_metadata("snapshot") == b"s1"
        and stores.meta.get_tuf_metadata("timestamp") == b"t1"
    )
