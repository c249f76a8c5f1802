"""One test per attack (Uptane's threat list), over real gRPC and mutual TLS.

Each test puts a malicious registry (or a man in the middle holding the
registry's server key, or an attacker holding the keys named in the test) in
front of a vehicle that runs squeezenet1.0 1.0.0 while 1.0.1 is published, and
asserts that the agent refuses, keeps serving its current model, and reports
the attack (install report, and the next signed version manifest).

The registry offers deltas (``server/encodings.py``); attacks on the full
model bytes first make the registry offer the full file only (``_full_only``),
so the agent fetches the bytes they tamper with. The two delta attacks tamper
with the delta (and the offer describing it) and withhold the full file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest
from tuf.api.metadata import Metadata, Root, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from otawire.v1 import ota_pb2
from server.service import create_server
from server.signing.keys import Expiries
from server.signing.repository import SignedRepository
from testkit.faultlink import FaultyLink
from testkit.helpers import publish_released, with_provenance
from tests.conftest import vehicle_identity
from tests.security.conftest import MODEL, Scene, assert_refused
from vehicle_agent.agent import AgentConfig, VehicleAgent
from vehicle_agent.download import RetryPolicy
from vehicle_agent.transport import RegistryClient, TransportConfig

_JSON = JSONSerializer(compact=True)


def _chunks(data: bytes, start: int = 0, size: int = 64 * 1024) -> Iterator[ota_pb2.DownloadChunk]:
    for off in range(start, len(data), size):
        yield ota_pb2.DownloadChunk(offset=off, data=data[off : off + size], total_length=len(data))


def _is_target(req: ota_pb2.DownloadRequest, context: grpc.ServicerContext) -> bool:
    return req.kind == ota_pb2.FILE_KIND_TARGET


def _full_only(scene: Scene, version: str = "1.0.1") -> None:
    """The registry offers ``version`` as the full file (no delta): the bytes the attack tampers with."""
    scene.registry.store.put_encodings(MODEL, version, [])


# -- transport ------------------------------------------------------------------------------------
def _install_through_recorder(
    scene: Scene, upstream: str, insecure: bool
) -> tuple[VehicleAgent, bytes]:
    rec = FaultyLink(upstream, record=True)  # a wiretap that forwards everything
    vid = "car-plain" if insecure else "car-tls"
    identity = vehicle_identity(scene.pki, vid)
    cfg = AgentConfig(
        registry=rec.address,
        state_dir=scene.tmp / vid,
        vehicle_id=vid,
        trusted_root=scene.keys.path / "root.json",
        director_root=scene.keys.path / "director-root.json",
        identity=identity,
        insecure=insecure,
    )
    agent = VehicleAgent(
        cfg,
        RegistryClient(rec.address, tls_files=None if insecure else identity, insecure=insecure),
    )
    scene.agents.append(agent)
    try:
        [out] = agent.update_once()
        assert out.status == "installed", out.reason
    finally:
        rec.close()
    return agent, bytes(rec.captured)


def test_eavesdrop(scene: Scene, squeezenet_bytes: bytes) -> None:
    """Mutual TLS: a wiretap sees neither the model, nor the vehicle id, nor the manifest."""
    publish_released(scene.registry, MODEL, "1.0.0", squeezenet_bytes)
    _, wire = _install_through_recorder(scene, scene.honest_address, insecure=False)
    model = _served_model_bytes(scene)
    weights = model[len(model) // 2 : len(model) // 2 + 64]
    assert len(wire) > len(model)  # it all went through the tap
    for secret in (weights, b"car-tls", MODEL.encode(), b"release_counter"):
        assert secret not in wire, f"{secret[:20]!r} visible on the wire"
    # The same tap on a plain-text (--insecure) registry reads everything: the test can fail.
    plain, port = create_server(scene.registry, "127.0.0.1:0", insecure=True)
    try:
        _, wire = _install_through_recorder(scene, f"127.0.0.1:{port}", insecure=True)
    finally:
        plain.stop(None)
    model = _served_model_bytes(scene)
    assert model[len(model) // 2 : len(model) // 2 + 64] in wire and b"car-plain" in wire


def _served_model_bytes(scene: Scene) -> bytes:
    """The bytes of the last model file served (the full target or an encoding of it)."""
    d = [d for d in scene.registry.downloads if d.kind in ("target", "encoding")][-1]
    return b"".join(c for _, c, _ in scene.registry.read_chunks(d.kind, d.path, 0, 0, 1 << 20))


def test_drop_request(scene: Scene, running: VehicleAgent) -> None:
    """The registry drops every download: the agent gives up in bounded time and keeps 1.0.0."""

    def drop(req, context, honest):
        context.abort(grpc.StatusCode.UNAVAILABLE, "dropped")
        yield from ()

    scene.set_attack(drop)
    t = time.monotonic()
    outcomes = running.update_once()
    assert time.monotonic() - t < 20
    assert_refused(running, outcomes, scene, "failed", "UNAVAILABLE")


@pytest.mark.alone  # timed
def test_slow_retrieval(scene: Scene, squeezenet_bytes: bytes, successor_bytes: bytes) -> None:
    """Bytes trickle in far below the minimum rate: the download is cut when its average falls
    below it (each call also has a deadline from its size), not when the link gives up."""
    publish_released(scene.registry, MODEL, "1.0.0", squeezenet_bytes)
    # 4 s for each call (a check-in on a busy machine) and 4.1 s for the 5 MB download: a link at
    # 50 MB/s on average; the trickle below would take over four minutes.
    agent = scene.agent(transport=TransportConfig(rpc_deadline_s=4.0, min_rate_bps=50_000_000))
    assert agent.update_once()[0].status == "installed"
    publish_released(scene.registry, MODEL, "1.0.1", successor_bytes)
    _full_only(scene)

    def trickle(req, context, honest):
        if not _is_target(req, context):
            yield from honest()
            return
        for chunk in honest():
            for i in range(0, len(chunk.data), 1024):
                time.sleep(0.05)  # ~20 KB/s
                yield ota_pb2.DownloadChunk(
                    offset=chunk.offset + i,
                    data=chunk.data[i : i + 1024],
                    total_length=chunk.total_length,
                )

    scene.set_attack(trickle)
    t = time.monotonic()
    outcomes = agent.update_once()
    assert time.monotonic() - t < 20
    assert_refused(agent, outcomes, scene, "failed", "below the minimum rate")


def test_freeze(scene: Scene, running: VehicleAgent) -> None:
    """The image metadata is frozen at what the vehicle already has, hiding 1.0.1: the
    director's instruction for 1.0.1 then lacks the image repository's signature."""
    frozen = (running.state_dir / "tuf" / "timestamp.json").read_bytes()

    def freeze(req, context, honest):
        if req.path == "timestamp.json":
            yield from _chunks(frozen)
        else:
            yield from honest()

    scene.set_attack(freeze)
    assert_refused(
        running, running.update_once(), scene, "attack_detected", "image repository did not sign"
    )


def test_indefinite_freeze(scene: Scene, running: VehicleAgent) -> None:
    """Frozen metadata past its expiry is refused (timestamps live for seconds here)."""
    scene.registry.tuf.expiries = Expiries(timestamp=timedelta(seconds=2))
    scene.registry.tuf.new_snapshot_and_timestamp()
    [out] = running.update_once()
    assert out.status == "installed" and out.version == "1.0.1"
    frozen = (running.state_dir / "tuf" / "timestamp.json").read_bytes()
    expires = Metadata.from_bytes(frozen).signed.expires.timestamp()
    time.sleep(max(0.0, expires - time.time()) + 0.2)

    def freeze(req, context, honest):
        yield from _chunks(frozen) if req.path == "timestamp.json" else honest()

    scene.set_attack(freeze)
    assert_refused(
        running,
        running.update_once(),
        scene,
        "attack_detected",
        "ExpiredMetadataError",
        serving="1.0.1",
    )


def test_partial_bundle(scene: Scene, running: VehicleAgent, successor_bytes: bytes) -> None:
    """The target stream stops half-way, on every try: nothing is installed from a partial
    file; once the link is honest again the download resumes at the cut."""
    _full_only(scene)
    half = len(successor_bytes) // 2
    # Every one of the default policy's tries is made and refused, with pauses of milliseconds
    # instead of the default backoff's 30-60 s in all (the backoff is not what this test checks).
    running.fetcher.retry = RetryPolicy(base_s=0.01, cap_s=0.05)
    assert running.fetcher.retry.attempts == RetryPolicy().attempts

    def cut(req, context, honest):
        if not _is_target(req, context):
            yield from honest()
            return
        for chunk in honest():
            if chunk.offset >= half:
                return  # a clean end of stream, short of the signed length
            yield chunk

    scene.set_attack(cut)
    assert_refused(running, running.update_once(), scene, "failed", "stream ended")
    scene.set_attack(None)
    [out] = running.update_once()
    assert out.status == "installed" and out.bytes_downloaded < len(successor_bytes)


def test_endless_data_target(scene: Scene, running: VehicleAgent) -> None:
    """The registry keeps streaming past the signed length: the agent stops at the length."""
    _full_only(scene)

    def endless(req, context, honest):
        if not _is_target(req, context):
            yield from honest()
            return
        pos = req.offset
        for chunk in honest():
            pos = chunk.offset + len(chunk.data)
            yield chunk
        while True:
            yield ota_pb2.DownloadChunk(offset=pos, data=b"\0" * 65536)
            pos += 65536

    scene.set_attack(endless)
    assert_refused(
        running, running.update_once(), scene, "attack_detected", "more than the signed length"
    )


def test_endless_data_metadata(scene: Scene, running: VehicleAgent) -> None:
    """An endless timestamp.json is cut at python-tuf's bound for that file (16 KiB)."""

    def endless(req, context, honest):
        if req.path != "timestamp.json":
            yield from honest()
            return
        pos = 0
        while True:
            yield ota_pb2.DownloadChunk(offset=pos, data=b"{" * 65536)
            pos += 65536

    scene.set_attack(endless)
    assert_refused(
        running, running.update_once(), scene, "attack_detected", "DownloadLengthMismatchError"
    )


def test_oversized_message(scene: Scene, running: VehicleAgent) -> None:
    """One 8 MiB message (the agent's limit is 4 MiB) is refused by gRPC and not retried."""

    def huge(req, context, honest):
        if req.path != "timestamp.json":
            yield from honest()
            return
        yield ota_pb2.DownloadChunk(offset=0, data=b"x" * (8 << 20))

    scene.set_attack(huge)
    assert_refused(running, running.update_once(), scene, "attack_detected", "oversized message")


def test_rollback_metadata(scene: Scene, running: VehicleAgent) -> None:
    """An older (validly signed) timestamp than the one the vehicle trusts is refused."""
    [out] = running.update_once()
    assert out.status == "installed" and out.version == "1.0.1"
    old = scene.registry.store.get_tuf_metadata("timestamp", 1)
    assert old is not None

    def rollback(req, context, honest):
        yield from _chunks(old) if req.path == "timestamp.json" else honest()

    scene.set_attack(rollback)
    assert_refused(
        running,
        running.update_once(),
        scene,
        "attack_detected",
        "BadVersionNumberError",
        serving="1.0.1",
    )


def test_rollback_model_version(
    scene: Scene, running: VehicleAgent, squeezenet_bytes: bytes
) -> None:
    """The director instructs the signed older 1.0.0 (release counter 1) after 1.0.1 (2)."""
    [out] = running.update_once()
    assert out.status == "installed" and out.version == "1.0.1"
    # A compromised director pins the older version (the registry's own `director assign` refuses
    # it up front, naming `ota rerelease`: tests/server/test_release.py); the vehicle refuses it too.
    scene.registry.store.set_assignment("car-1", MODEL, "1.0.0")
    assert_refused(
        running,
        running.update_once(),
        scene,
        "attack_detected",
        "rollback refused",
        serving="1.0.1",
    )
    # The legitimate way back: the image repository signs the old bytes as a new release.
    publish_released(scene.registry, MODEL, "1.0.2", squeezenet_bytes)
    scene.registry.director.assign("car-1", MODEL, "1.0.2")
    [out] = running.update_once()
    assert out.status == "installed" and out.version == "1.0.2"


def test_mix_and_match(scene: Scene, running: VehicleAgent) -> None:
    """Targets metadata from another snapshot (an old, validly signed version) is refused."""
    old_targets = scene.registry.store.get_tuf_metadata("targets", 1)
    assert old_targets is not None

    def mix(req, context, honest):
        if (
            req.kind == ota_pb2.FILE_KIND_METADATA
            and req.path.endswith(".targets.json")
            and not req.path.startswith("director/")
        ):
            yield from _chunks(old_targets)
        else:
            yield from honest()

    scene.set_attack(mix)
    assert_refused(
        running, running.update_once(), scene, "attack_detected", "BadVersionNumberError"
    )


def test_arbitrary_software_tampered_model(scene: Scene, running: VehicleAgent) -> None:
    """One flipped bit in the model bytes on the wire: the signed hash does not match."""
    _full_only(scene)

    def flip(req, context, honest):
        for chunk in honest():
            if _is_target(req, context) and chunk.offset == 0:
                data = bytearray(chunk.data)
                data[len(data) // 2] ^= 1
                chunk = ota_pb2.DownloadChunk(
                    offset=chunk.offset, data=bytes(data), total_length=chunk.total_length
                )
            yield chunk

    scene.set_attack(flip)
    assert_refused(running, running.update_once(), scene, "attack_detected", "signed hash")
    assert not list((running.state_dir / "downloads").glob("*.part")), (
        "a tampered prefix must not be kept"
    )


def _resign(data: bytes, signer, **changes) -> bytes:
    md = Metadata.from_bytes(data)
    for k, v in changes.items():
        setattr(md.signed, k, v)
    md.signatures.clear()
    md.sign(signer)
    return md.to_bytes(_JSON)


def test_fast_forward(scene: Scene, running: VehicleAgent, squeezenet_bytes: bytes) -> None:
    """With a stolen timestamp key the attacker fast-forwards the timestamp version; honest
    metadata then looks like a rollback and is refused, until the key is rotated."""
    stolen = scene.keys.signer_for(scene.keys.keyids("timestamp")[0])

    def fast_forward(req, context, honest):
        if req.path == "timestamp.json":
            yield from _chunks(_resign(scene.metadata("timestamp.json"), stolen, version=10_000))
        else:
            yield from honest()

    scene.set_attack(fast_forward)
    [out] = running.update_once()  # validly signed: accepted (1.0.1 is genuine, it installs)
    assert out.version == "1.0.1"
    scene.set_attack(None)
    assert_refused(
        running,
        running.update_once(),
        scene,
        "attack_detected",
        "BadVersionNumberError",
        serving="1.0.1",
    )
    # Recovery: rotate the timestamp key; the vehicle follows root v2 and drops the forged timestamp.
    scene.keys.rotate("timestamp")
    scene.registry.tuf.put_root(scene.keys.root_bytes())
    publish_released(scene.registry, MODEL, "1.0.2", with_provenance(squeezenet_bytes, "1.0.2"))
    [out] = running.update_once()
    assert out.status == "installed" and out.version == "1.0.2", out.reason


def test_key_compromise_below_threshold(scene: Scene, running: VehicleAgent) -> None:
    """One of three root keys (threshold 2) cannot sign a new root that swaps in the
    attacker's targets key."""
    from securesystemslib.signer import CryptoSigner

    one_root_key = scene.keys.signer_for(scene.keys.keyids("root")[0])
    attacker = CryptoSigner.generate_ed25519()
    forged = Metadata[Root].from_bytes(scene.keys.root_bytes())
    for keyid in list(forged.signed.roles["targets"].keyids):
        forged.signed.revoke_key(keyid, "targets")
    forged.signed.add_key(attacker.public_key, "targets")
    forged.signed.version = 2
    forged.sign(one_root_key)
    forged_bytes = forged.to_bytes(_JSON)

    def serve_forged_root(req, context, honest):
        yield from _chunks(forged_bytes) if req.path == "2.root.json" else honest()

    scene.set_attack(serve_forged_root)
    assert_refused(
        running, running.update_once(), scene, "attack_detected", "root was signed by 1/2 keys"
    )


class _Memory:
    """An attacker's copy of car-1's director chain, to extend with a stolen director key."""

    def __init__(self, scene: Scene, vehicle_id: str) -> None:
        self.files: dict[tuple[str, int], bytes] = {}
        for role in ("root", "targets", "snapshot", "timestamp"):
            data = scene.registry.store.get_vehicle_metadata(
                "*" if role == "root" else vehicle_id, role
            )
            assert data is not None
            self.files[(role, Metadata.from_bytes(data).signed.version)] = data

    def get(self, role: str, version: int | None = None) -> bytes | None:
        if version is None:
            versions = [v for r, v in self.files if r == role]
            return self.files[(role, max(versions))] if versions else None
        return self.files.get((role, version))

    def put(self, role: str, version: int, data: bytes) -> None:
        self.files[(role, version)] = data

    def signing_lock(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def test_compromised_director_key(
    scene: Scene, running: VehicleAgent, squeezenet_bytes: bytes
) -> None:
    """The director key alone signs instructions for bytes the image repository never
    signed (a new path, then a known path with other hashes): both refused."""
    import hashlib

    evil = with_provenance(squeezenet_bytes, "malicious")
    forged = SignedRepository(_Memory(scene, "car-1"), scene.keys, label="forged")

    def instruct(path: str, version: str) -> None:
        custom = {
            "name": MODEL,
            "version": version,
            "hardware_id": running.config.hardware_id,
            "release_counter": 99,
        }
        tf = TargetFile(
            len(evil),
            {"sha256": hashlib.sha256(evil).hexdigest()},
            path,
            unrecognized_fields={"custom": custom},
        )
        forged.sign_new_targets(Targets(targets={path: tf}))

    def serve_forged(req, context, honest):
        if req.path.startswith("director/"):
            try:
                data = forged.get_file(req.path.removeprefix("director/"))
            except FileNotFoundError:
                context.abort(grpc.StatusCode.NOT_FOUND, req.path)
            yield from _chunks(data)
        elif _is_target(req, context):
            yield from _chunks(evil, req.offset)
        else:
            yield from honest()

    scene.set_attack(serve_forged)
    instruct(f"{MODEL}/6.6.6.onnx", "6.6.6")
    assert_refused(
        running, running.update_once(), scene, "attack_detected", "image repository did not sign"
    )
    instruct(f"{MODEL}/1.0.1.onnx", "1.0.1")
    assert_refused(running, running.update_once(), scene, "attack_detected", "disagree on")


def test_revoked_key(scene: Scene, running: VehicleAgent) -> None:
    """A timestamp key revoked after theft: once the vehicle follows the new root, metadata
    signed with the revoked key is refused."""
    old = scene.keys.keyids("timestamp")[0]
    stolen = scene.keys.signer_for(old)
    scene.keys.revoke(old)
    scene.registry.tuf.put_root(scene.keys.root_bytes())
    [out] = running.update_once()  # follows root v2, installs 1.0.1
    assert out.status == "installed" and out.version == "1.0.1"
    current = Metadata[Timestamp].from_bytes(scene.metadata("timestamp.json")).signed.version

    def with_revoked_key(req, context, honest):
        if req.path == "timestamp.json":
            yield from _chunks(
                _resign(scene.metadata("timestamp.json"), stolen, version=current + 100)
            )
        else:
            yield from honest()

    scene.set_attack(with_revoked_key)
    assert_refused(
        running,
        running.update_once(),
        scene,
        "attack_detected",
        "timestamp was signed by 0/1 keys",
        serving="1.0.1",
    )


def _delta_attack(scene: Scene, agent: VehicleAgent, make_delta) -> None:
    """Serve ``make_delta(honest encoding bytes)`` for the delta; withhold every other way in.

    The full file and the offer's stand-alone fallback encoding are both withheld, so the
    only bytes the agent can get are the attacker's delta, which it must refuse.
    """

    blobs: dict[str, bytes] = {}
    fallbacks: set[str] = set()

    def delta(path: str) -> bytes:
        if path not in blobs:
            honest = scene.registry.read_chunks("encoding", path, 0, 0, 1 << 20)
            blobs[path] = make_delta(b"".join(d for _, d, _ in honest))
        return blobs[path]

    def offers(resp: ota_pb2.CheckForUpdateResponse) -> ota_pb2.CheckForUpdateResponse:
        for o in resp.offers:  # a malicious registry describes its delta as it likes
            if o.encoding != "full":
                o.download_length = len(delta(o.download_path))
            if o.fallback_download_path:
                fallbacks.add(o.fallback_download_path)
        return resp

    def attack(req, context, honest):
        if req.kind == ota_pb2.FILE_KIND_ENCODING and req.path not in fallbacks:
            yield from _chunks(delta(req.path), req.offset)
        elif req.kind in (ota_pb2.FILE_KIND_TARGET, ota_pb2.FILE_KIND_ENCODING):
            context.abort(grpc.StatusCode.NOT_FOUND, "withheld")
        else:
            yield from honest()

    scene.set_attack(attack)
    scene.evil.offers = offers
    outcomes = agent.update_once()
    assert_refused(agent, outcomes, scene, "failed", "withheld", attack="encoding refused")


def test_arbitrary_software_tampered_delta(scene: Scene, running: VehicleAgent) -> None:
    """One flipped byte in the delta's payload: the rebuild refuses it (and never installs it)."""

    def flip(blob: bytes) -> bytes:
        data = bytearray(blob)
        data[-10] ^= 0x40
        return bytes(data)

    _delta_attack(scene, running, flip)


def test_arbitrary_software_wrong_base_delta(
    scene: Scene, running: VehicleAgent, squeezenet_bytes: bytes, successor_bytes: bytes
) -> None:
    """A well-formed delta to 1.0.1 made against another base than the installed model."""
    from modelpack import codecs

    wrong = codecs.encode(
        "tensordelta", successor_bytes, base=with_provenance(squeezenet_bytes, "other base")
    )
    _delta_attack(scene, running, lambda honest: wrong)
