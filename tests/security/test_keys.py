"""Keystore: thresholds, expiries, rotation, revocation, and offline targets signing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from otawire import tls
from server.client import PublisherClient
from server.errors import RegistryError
from server.registry import Registry
from server.service import create_server
from server.signing.keys import Expiries, Keystore, KeystoreError
from server.signing.targets import sign_targets
from testkit.helpers import with_provenance
from tests.conftest import vehicle_identity
from vehicle_agent.agent import AgentConfig, VehicleAgent

MODEL = "squeezenet1.0"


def _root(data: bytes) -> Metadata[Root]:
    return Metadata[Root].from_bytes(data)


def test_demo_keystore_is_root_2_of_3_with_configured_expiries(tmp_path: Path) -> None:
    ks = Keystore.init(tmp_path / "k", Expiries.parse("timestamp=2h,targets=2w"))
    for repo in ("image", "director"):
        root = _root(ks.root_bytes(repo))
        assert (
            root.signed.roles["root"].threshold == 2 and len(root.signed.roles["root"].keyids) == 3
        )
        root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
        assert len(root.signatures) == 3
    director = _root(ks.director_root_bytes()).signed
    assert director.roles["targets"].keyids == ks.keyids("director") != ks.keyids("targets")
    assert Keystore(ks.path).expiries == Expiries(
        timestamp=timedelta(hours=2), targets=timedelta(weeks=2)
    )
    with pytest.raises(KeystoreError, match="bad expiry"):
        Expiries.parse("timestamp=forever")


def test_root_signed_below_threshold_does_not_verify(tmp_path: Path) -> None:
    ks = Keystore.init(tmp_path / "k")
    root = _root(ks.root_bytes())
    root.signed.version += 1
    root.signatures.clear()
    root.sign(ks.signer_for(ks.keyids("root")[0]))
    with pytest.raises(UnsignedMetadataError):
        _root(ks.root_bytes()).signed.verify_delegate("root", root.signed_bytes, root.signatures)


def test_rotation_and_revocation_make_a_verifiable_root_chain(tmp_path: Path) -> None:
    ks = Keystore.init(tmp_path / "k")
    old_targets = ks.keyids("targets")
    new_targets = ks.rotate("targets")
    v1, v2 = (_root(b) for b in ks.root_history("image"))
    assert (
        v2.signed.version == 2 and v2.signed.roles["targets"].keyids == new_targets != old_targets
    )
    v1.signed.verify_delegate(
        "root", v2.signed_bytes, v2.signatures
    )  # vehicles trusting v1 accept v2
    assert ks.signer_for(old_targets[0]) is None, "a rotated-out private key is not kept"
    assert _root(ks.director_root_bytes()).signed.version == 1, (
        "the director root does not list targets keys"
    )

    stolen = ks.keyids("root")[0]
    assert ks.revoke(stolen[:10]) == [], "2 root keys remain: the threshold (2) still holds"
    v3 = _root(ks.root_bytes())
    v2.signed.verify_delegate("root", v3.signed_bytes, v3.signatures)
    assert stolen not in v3.signed.roles["root"].keyids and len(v3.signed.roles["root"].keyids) == 2
    assert _root(ks.director_root_bytes()).signed.version == 2, "root keys sign both repositories"

    [replacement] = ks.revoke(ks.keyids("timestamp")[0])  # a one-key role gets a fresh key
    assert _root(ks.root_bytes()).signed.roles["timestamp"].keyids == [replacement]


def test_online_export_holds_no_offline_private_key(tmp_path: Path) -> None:
    online = Keystore.init(tmp_path / "k").export_online(tmp_path / "online")
    assert [
        r for r in ("root", "targets", "snapshot", "timestamp", "director") if online.has_private(r)
    ] == ["snapshot", "timestamp", "director"]
    assert not list(online.path.glob("root-*.pem")) and not list(online.path.glob("targets-*.pem"))


@pytest.fixture
def offline_registry(tmp_path: Path, pki: Path):
    """A registry holding online keys only, over mutual TLS; the publisher holds the offline keystore."""
    offline = Keystore.init(tmp_path / "keys")
    reg = Registry.open(
        tmp_path / "reg",
        offline.export_online(tmp_path / "online").path,
        ca_pem=(pki / tls.CA_CERT).read_bytes(),
    )
    server, port = create_server(
        reg, "127.0.0.1:0", tls_files=tls.TlsFiles.in_dir(pki, "server", "registry")
    )
    pub = PublisherClient(
        f"127.0.0.1:{port}", tls_files=tls.TlsFiles.in_dir(pki, "publisher", "ml-team")
    )
    yield reg, offline, pub, f"127.0.0.1:{port}"
    pub.close()
    server.stop(None)
    reg.store.close()


def test_registry_without_targets_key_serves_only_publisher_signed_targets(
    offline_registry, squeezenet_bytes
) -> None:
    reg, offline, pub, _ = offline_registry
    with pytest.raises(RegistryError, match="targets key is offline"):
        reg.publish_bytes(MODEL, "1.0.0", squeezenet_bytes)
    resp = pub.upload(squeezenet_bytes, MODEL, "1.0.0", keys=offline)
    tf = reg.tuf.targets()[resp.target_path]
    assert tf.custom["release_counter"] == 1 and tf.hashes["sha256"] == resp.sha256
    current = reg.tuf.get_file("targets.json")
    forger = (
        CryptoSigner.generate_ed25519()
    )  # the registry's own online keys cannot sign targets either
    for signer, what in (
        (forger, "not signed by the targets threshold"),
        (offline.signer_for(offline.keyids("snapshot")[0]), "not signed by the targets threshold"),
    ):
        with pytest.raises(RegistryError, match=what):
            reg.put_metadata("targets", sign_targets(current, [signer], offline.expiries))
    stale = reg.store.get_tuf_metadata("targets", 1)
    with pytest.raises(RegistryError, match="not newer"):
        reg.put_metadata("targets", stale)


def test_agent_follows_a_targets_key_rotation(
    offline_registry, squeezenet_bytes, tmp_path: Path, pki: Path
) -> None:
    reg, offline, pub, address = offline_registry
    pub.upload(squeezenet_bytes, MODEL, "1.0.0", keys=offline)
    reg.release(MODEL, "1.0.0")
    cfg = AgentConfig(
        registry=address,
        state_dir=tmp_path / "car",
        vehicle_id="car-1",
        trusted_root=offline.path / "root.json",
        director_root=offline.path / "director-root.json",
        identity=vehicle_identity(pki, "car-1"),
    )
    agent = VehicleAgent(cfg)
    try:
        assert agent.update_once()[0].status == "installed"
        offline.rotate("targets")  # what `ota keys rotate targets --registry …` does, step by step
        assert pub.put_metadata("root", offline.root_bytes()) == 2
        pub.resign_targets(offline)
        pub.upload(with_provenance(squeezenet_bytes, "1.0.1"), MODEL, "1.0.1", keys=offline)
        reg.release(MODEL, "1.0.1")
        [out] = agent.update_once()
        assert (out.status, out.version) == ("installed", "1.0.1"), out.reason
        assert _root((agent.state_dir / "tuf" / "root.json").read_bytes()).signed.version == 2
    finally:
        agent.close()


def test_cli_rotates_an_online_key_and_vehicles_follow(
    offline_registry, squeezenet_bytes, tmp_path: Path, pki: Path
) -> None:
    """`ota keys rotate timestamp`, `ota keys online`, `ota keys push`: in that order, nothing breaks."""
    from click.testing import CliRunner

    from ota.cli import cli

    reg, offline, pub, address = offline_registry
    pub.upload(squeezenet_bytes, MODEL, "1.0.0", keys=offline)
    reg.release(MODEL, "1.0.0")
    agent = VehicleAgent(
        AgentConfig(
            registry=address,
            state_dir=tmp_path / "car",
            vehicle_id="car-1",
            trusted_root=offline.path / "root.json",
            director_root=offline.path / "director-root.json",
            identity=vehicle_identity(pki, "car-1"),
        )
    )
    creds = tls.TlsFiles.in_dir(pki, "publisher", "ml-team")
    push = [
        "keys",
        "push",
        "--keys",
        str(offline.path),
        "--registry",
        address,
        "--ca",
        str(creds.ca),
        "--cert",
        str(creds.cert),
        "--key",
        str(creds.key),
    ]
    run = CliRunner().invoke
    try:
        assert agent.update_once()[0].status == "installed"
        old = offline.keyids("timestamp")[0]
        assert run(cli, ["keys", "rotate", "timestamp", "--keys", str(offline.path)]).exit_code == 0
        early = run(cli, push)
        assert early.exit_code != 0 and "install the new online keys first" in early.output
        assert (
            run(
                cli,
                ["keys", "online", "--keys", str(offline.path), "--out", str(tmp_path / "online")],
            ).exit_code
            == 0
        )
        done = run(cli, push)
        assert done.exit_code == 0 and "now serves root v2" in done.output, done.output
        pub.upload(with_provenance(squeezenet_bytes, "1.0.1"), MODEL, "1.0.1", keys=offline)
        reg.release(MODEL, "1.0.1")
        [out] = agent.update_once()
        assert (out.status, out.version) == ("installed", "1.0.1"), out.reason
        ts = Metadata.from_bytes((agent.state_dir / "tuf" / "timestamp.json").read_bytes())
        assert old not in ts.signatures and set(ts.signatures) == set(
            Keystore(offline.path).keyids("timestamp")
        )
    finally:
        agent.close()
