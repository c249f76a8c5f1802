"""Encodings end to end over real gRPC: the registry precomputes them on
publish and offers the smallest; the agent rebuilds and verifies, and falls
back to the full model when an encoding is wrong or damaged."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from modelpack import deepcompression as dc
from modelpack.imaging import IMAGES_DIR
from modelpack.zoo.squeezenet import build_from_tensors
from server.encodings import stored_encodings
from testkit.helpers import publish_released

NAME = "squeezenet1.0"


def _retrained(seed: int) -> bytes:
    """Real SqueezeNet with every codebook moved ~1% (indices kept)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in dc.load_shipped_tensors():
        values, inverse = np.unique(t.weight, return_inverse=True)
        moved = np.where(values == 0, 0, values * (1 + rng.normal(0, 0.01, values.size))).astype(
            np.float32
        )
        out.append(
            dataclasses.replace(t, weight=moved[inverse.reshape(-1)].reshape(t.weight.shape))
        )
    return build_from_tensors(out)


@pytest.fixture(scope="module")
def successors() -> tuple[bytes, bytes]:
    return _retrained(1), _retrained(2)


def _active_bytes(agent) -> bytes:
    m = agent.slots.load()[NAME]
    return agent.slots.model_path(NAME, m.active).read_bytes()


def test_registry_serves_smallest_encodings_and_agent_rebuilds_exact_model(
    registry_server, make_agent, squeezenet_bytes, successors
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent()
    [first] = agent.update_once()
    assert first.status == "installed", first.reason
    assert first.encoding == "deepcompression" and first.bytes_downloaded < 550_000

    v101 = successors[0]
    publish_released(reg, NAME, "1.0.1", v101)
    kinds = {(s.codec, bool(s.base_sha256)) for s in stored_encodings(reg.store, NAME, "1.0.1")}
    assert kinds == {("deepcompression", False), ("tensordelta", True)}

    [upd] = agent.update_once()

    assert upd.status == "installed", upd.reason
    assert upd.encoding == "tensordelta"
    assert upd.bytes_downloaded < 30_000  # 26 retrained codebooks, vs 5 MB full
    assert _active_bytes(agent) == v101
    assert agent.models[NAME].version == "1.0.1"
    assert agent.classify(NAME, IMAGES_DIR / "coffee.png", 1)[0].label == "espresso"
    served = [d for d in reg.downloads if d.kind == "encoding"]
    assert [d.bytes_sent for d in served] == [first.bytes_downloaded, upd.bytes_downloaded]
    [rep] = [
        r
        for r in reg.store.list_reports("car-1")
        if r.version == "1.0.1" and r.status == "installed"
    ]
    assert rep.encoding == "tensordelta" and rep.bytes_downloaded == upd.bytes_downloaded


def test_wrong_base_patch_is_detected_and_the_standalone_encoding_fetched(
    registry_server, make_agent, squeezenet_bytes, successors
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent()
    assert agent.update_once()[0].status == "installed"
    publish_released(reg, NAME, "1.0.1", successors[0])
    publish_released(reg, NAME, "1.0.2", successors[1])
    # Make the registry offer, for the installed 1.0.0, the delta that was
    # actually made against 1.0.1: the label says the right base, the patch not.
    sha100 = hashlib.sha256(squeezenet_bytes).hexdigest()
    sha101 = hashlib.sha256(successors[0]).hexdigest()
    entries = [
        e for e in stored_encodings(reg.store, NAME, "1.0.2") if e.base_sha256 in ("", sha101)
    ]
    reg.store.put_encodings(
        NAME,
        "1.0.2",
        [
            dataclasses.replace(e, base_sha256=sha100 if e.base_sha256 == sha101 else "")
            for e in entries
        ],
    )

    [upd] = agent.update_once()

    # issue 12: not the 5 MB file, but the stand-alone encoding of the same bytes.
    assert upd.status == "installed", upd.reason
    assert upd.encoding == "deepcompression" and upd.bytes_downloaded < 600_000
    assert _active_bytes(agent) == successors[1]


def test_damaged_encoding_falls_back_to_full(
    registry_server, make_agent, squeezenet_bytes, successors
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent()
    agent.update_once()
    publish_released(reg, NAME, "1.0.1", successors[0])
    for s in stored_encodings(reg.store, NAME, "1.0.1"):
        path = reg.blobs.path(s.blob_sha256)
        data = bytearray(path.read_bytes())
        data[-10] ^= 0x20
        path.write_bytes(bytes(data))

    [upd] = agent.update_once()

    assert upd.status == "installed", upd.reason
    assert upd.encoding == "full" and upd.bytes_downloaded == len(successors[0])
    assert _active_bytes(agent) == successors[0]


class _DecoderWithoutItsLibrary:
    """A deepcompression decoder on a car where its library is not installed:
    what an aarch64 car met when the coder had no aarch64 wheel."""

    name, codec_id, needs_base = "deepcompression", 4, False

    def encode(
        self, new: bytes, base: bytes | None
    ) -> bytes:  # pragma: no cover - the registry uses the real one
        raise AssertionError("not used")

    def decode(self, payload: bytes, base: bytes | None, target_length: int) -> bytes:
        raise ModuleNotFoundError("No module named 'constriction'")


def test_decoder_that_cannot_run_is_a_reported_failed_step_then_full_model(
    registry_server, make_agent, squeezenet_bytes, monkeypatch
) -> None:
    from modelpack import codecs

    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent()
    codecs.decodable()  # the car's start-up probe passed; the decoder breaks on the real payload
    # Only the car's decoder is missing its library; the registry encoded normally.
    monkeypatch.setitem(codecs._BY_ID, 4, _DecoderWithoutItsLibrary())

    [first] = agent.update_once()

    assert first.status == "installed", first.reason
    assert first.encoding == "full" and first.bytes_downloaded == len(squeezenet_bytes)
    assert first.bytes_discarded > 0  # the encoding that could not be decoded
    assert _active_bytes(agent) == squeezenet_bytes


def test_vehicle_names_the_encodings_it_decodes_and_is_offered_only_those(
    registry_server, make_agent, squeezenet_bytes, monkeypatch
) -> None:
    from modelpack import codecs

    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    # The registry offers what the vehicle says it decodes, whatever is stored.
    [o] = reg.offers_for("car-9", "", {}, accepted=["full", "tensordelta"])
    assert o.encoding == "full"
    [o] = reg.offers_for("car-9", "", {}, accepted=["full", "deepcompression"])
    assert o.encoding == "deepcompression"

    monkeypatch.setitem(codecs._BY_ID, 4, _DecoderWithoutItsLibrary())
    codecs.decodable.cache_clear()  # the car's start-up probe finds the decoder broken
    try:
        agent = make_agent()
        [first] = agent.update_once()
    finally:
        codecs.decodable.cache_clear()

    assert first.status == "installed", first.reason
    assert (
        first.encoding == "full" and first.bytes_discarded == 0
    )  # never fetched what it cannot decode
    assert not [d for d in reg.downloads if d.kind == "encoding"]
    assert _active_bytes(agent) == squeezenet_bytes
