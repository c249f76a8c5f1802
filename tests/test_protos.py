"""The committed gRPC stubs must match what protoc generates from protos/."""

from __future__ import annotations

from pathlib import Path

import pytest

from otawire import protogen


def test_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    generated = protogen.generate(tmp_path)
    assert generated, "protoc generated nothing"
    committed_dir = protogen.REPO / "otawire" / "v1"
    for f in generated:
        committed = committed_dir / f.name
        assert committed.exists(), f"{committed} is missing: run `make protos`"
        assert committed.read_bytes() == f.read_bytes(), f"{committed} is stale: run `make protos`"


def test_stubs_import_and_expose_services() -> None:
    from otawire.v1 import ota_pb2, ota_pb2_grpc

    names = {s.name for s in ota_pb2.DESCRIPTOR.services_by_name.values()}
    assert names == {"Publisher", "Vehicle"}
    assert hasattr(ota_pb2_grpc, "VehicleServicer")
    # Download must accept a byte offset: resumable downloads depend on it.
    assert "offset" in ota_pb2.DownloadRequest.DESCRIPTOR.fields_by_name


# --- The contract's AIP rules (docs/architecture.md, "The contract") ---------------------------


def _files():
    from otawire.v1 import campaigns_pb2, fleet_pb2, inference_pb2, ota_pb2

    return [
        ota_pb2.DESCRIPTOR,
        campaigns_pb2.DESCRIPTOR,
        fleet_pb2.DESCRIPTOR,
        inference_pb2.DESCRIPTOR,
    ]


def _methods():
    return [m for f in _files() for s in f.services_by_name.values() for m in s.methods]


def _messages(desc):
    for m in desc.message_types_by_name.values():
        yield m
        yield from m.nested_types


def test_each_rpc_has_its_own_request_message_named_after_it() -> None:
    inputs = [m.input_type.full_name for m in _methods()]
    shared = {t for t in inputs if inputs.count(t) > 1}
    assert not shared, f"request messages shared between RPCs: {shared}"
    misnamed = [
        f"{m.name}({m.input_type.name})"
        for m in _methods()
        if m.input_type.name != f"{m.name}Request"
    ]
    assert not misnamed, f"AIP: the request of Foo is FooRequest: {misnamed}"


def test_every_list_rpc_is_paged() -> None:
    lists = [m for m in _methods() if m.name.startswith("List")]
    assert len(lists) >= 6
    for m in lists:
        assert {"page_size", "page_token"} <= set(m.input_type.fields_by_name), m.name
        assert "next_page_token" in m.output_type.fields_by_name, m.name


def test_enums_start_unspecified_and_times_are_timestamps() -> None:
    from google.protobuf.descriptor import FieldDescriptor

    for f in _files():
        enums = list(f.enum_types_by_name.values())
        for e in enums:
            assert e.values[0].number == 0 and e.values[0].name.endswith("_UNSPECIFIED"), e.name
        for msg in _messages(f):
            for fd in msg.fields:
                where = f"{msg.full_name}.{fd.name}"
                assert fd.name != "at" and not fd.name.endswith("_at"), (
                    f"{where}: an instant is a google.protobuf.Timestamp named *_time"
                )
                if fd.name.endswith("_time"):
                    assert fd.type == FieldDescriptor.TYPE_MESSAGE, where
                    assert fd.message_type.full_name == "google.protobuf.Timestamp", where
                # The audit log's action names the audited RPC ("campaign.create"): it grows with
                # the API, and operators filter by the text; it stays a string.
                audit = msg.name in ("AuditEntry", "ListAuditEntriesRequest")
                if not audit and (
                    fd.name in ("state", "status", "kind", "encoding", "action")
                    or fd.name.endswith("_encoding")
                ):
                    assert fd.type == FieldDescriptor.TYPE_ENUM, f"{where}: a closed set is an enum"


def test_every_field_and_rpc_has_a_comment() -> None:
    import re

    field = re.compile(r"^\s*(repeated\s+)?[\w.]+\s+\w+\s*=\s*\d+;")
    rpc = re.compile(r"^\s*rpc\s+\w+")
    missing = []
    for proto in protogen.proto_files():
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if not (field.match(line) or rpc.match(line)) or "//" in line:
                continue
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("reserved"):
                j -= 1
            prev = lines[j].strip() if j >= 0 else ""
            # a field right after its group's comment, or after a sibling that shares it (echoes)
            if not prev.startswith("//") and not field.match(lines[j]):
                missing.append(f"{proto.name}:{i + 1}: {line.strip()}")
    assert not missing, "fields and RPCs need a comment:\n" + "\n".join(missing)
