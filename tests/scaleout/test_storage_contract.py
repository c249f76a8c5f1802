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

from server.storage import BlobNotFound, ModelRecord, ReportRecord, StorageError


def _model(name: str = "squeezenet1.0", version: str = "1.0.0", sha: str = "a" * 64, at: str = "2026-01-01T00:00:00Z",
           **kw) -> ModelRecord:
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


def test_a_signed_tuf_version_cannot_be_replaced(stores) -> None:
    stores.meta.put_tuf_metadata("targets", 1, b"first")
    with pytest.raises(StorageError, match="TUF targets version 1 already exists"):
        stores.meta.put_tuf_metadata("targets", 1, b"second")
    assert stores.meta.get_tuf_metadata("targets", 1) == b"first"


# -- reports ----------------------------------------------------------------------------
def test_reports_round_trip_in_arrival_order(stores) -> None:
    first = ReportRecord("car-1", "squeezenet1.0", "1.0.0", "downloading", bytes_downloaded=0)
    second = ReportRecord(
        "car-1", "squeezenet1.0", "1.0.0", "installed", reason="", hardware_id="ecu-a", sha256="f" * 64,
        from_version="0.9.0", encoding="full", bytes_downloaded=5_000_000, duration_s=1.25, active_version="1.0.0",
        extra={"slot": "b", "n": [1, 2]},
    )
    other = ReportRecord("car-2", "squeezenet1.0", "1.0.0", "failed", reason="self-test failed: top-1 mismatch")
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
            stores.meta.add_report(ReportRecord(f"car-{i}", "m", "1.0.0", "installed", extra={"j": j}))

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
    handles = [stores.meta] + ([stores.open_another()] if stores.engine == "postgresql" else [stores.meta])
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
