"""The director (Uptane's split): per-vehicle instructions, signed with an online key.

The image repository says what *exists* (signed offline). The director says
what *this vehicle* must install: for each vehicle it keeps its own TUF chain
(``targets``/``snapshot``/``timestamp`` signed by the ``director`` key, under a
director root signed by the offline root keys) whose targets are copies of
image targets (same path, length and hashes) with the vehicle's hardware id.
The agent installs only what both repositories agree on, so a stolen director
key can reorder, withhold or pin versions, but never introduce bytes the image
repository did not sign, and never lower a release counter.

What a vehicle gets: an explicit assignment (``assign``: "vehicle V must
install M version X") wins; otherwise the registry's decision
(``Registry.targets_for``: the rollout campaigns, else the latest version for
the vehicle's hardware). The vehicle's hardware id and installed images come
from its last **verified version manifest** (:meth:`Director.process_manifest`),
never from an unsigned claim.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from tuf.api.metadata import TargetFile, Targets

from otawire import tls
from otawire.paths import DIRECTOR_PREFIX
from otawire.v1 import ota_pb2
from server.errors import InvalidArgument, NotFound, PermissionDenied, Replay
from server.releases import refuse_below_counter, release_counter
from server.signing.errors import TufError
from server.signing.keys import Keystore
from server.signing.repository import SignedRepository, TufRepository
from server.storage.ports import DirectorStore, FleetStore, ModelStore, TufMetadataStore
from server.storage.records import ManifestRecord, ModelRecord

log = logging.getLogger(__name__)

SHARED = "*"  # the vehicle id under which the director root chain is stored
MAX_MANIFEST_BYTES = 64 * 1024


class DirectorDeps(DirectorStore, ModelStore, FleetStore, TufMetadataStore, Protocol):
    """The ports the director uses: its own, the published versions it may assign, and (to refuse
    an assignment below what a vehicle runs) the inventory and the signed release counters."""


@dataclass(frozen=True)
class VehicleAccess:
    """One vehicle's director chain in the store; the root chain is shared by all."""

    store: DirectorStore
    vehicle_id: str

    def get(self, role: str, version: int | None = None) -> bytes | None:
        return self.store.get_vehicle_metadata(
            SHARED if role == "root" else self.vehicle_id, role, version
        )

    def put(self, role: str, version: int, data: bytes) -> None:
        self.store.put_vehicle_metadata(
            SHARED if role == "root" else self.vehicle_id, role, version, data
        )

    def signing_lock(self) -> AbstractContextManager[None]:
        # One lock per vehicle: check-ins of different vehicles sign in parallel.
        return self.store.signing_lock(f"{DIRECTOR_PREFIX}{self.vehicle_id}")


# (vehicle id, hardware id, installed {name: (version, sha256)}) -> {model name: version to run}
DefaultPolicy = Callable[[str, str, dict[str, tuple[str, str]]], dict[str, ModelRecord]]


class Director:
    def __init__(
        self,
        store: DirectorDeps,
        keystore: Keystore,
        image: TufRepository,
        default_policy: DefaultPolicy,
        ca_pem: bytes | None = None,
    ) -> None:
        self.store = store
        self._keys = keystore
        self._image = image
        self._default = default_policy
        self._ca_pem = ca_pem
        self._shared = SignedRepository(
            VehicleAccess(store, SHARED),
            keystore,
            label="director",
            online_roles=("targets", "snapshot", "timestamp"),
        )
        self._shared.install_root_chain(keystore.root_history("director"))

    def repo(self, vehicle_id: str) -> SignedRepository:
        if not vehicle_id or vehicle_id == SHARED:
            raise InvalidArgument(f"bad vehicle id {vehicle_id!r}")
        return SignedRepository(
            VehicleAccess(self.store, vehicle_id),
            self._keys,
            label=f"{DIRECTOR_PREFIX}{vehicle_id}",
        )

    def put_root(self, data: bytes) -> int:
        """The next director root version (rotation of the director or root keys)."""
        return self._shared.put_root(data).signed.version

    # -- instructions ----------------------------------------------------------------------
    def assign(self, vehicle_id: str, name: str, version: str | None) -> None:
        """Vehicle ``vehicle_id`` must install ``name`` ``version`` (None: back to the default)."""
        if version is not None and self.store.get_model(name, version) is None:
            raise NotFound(f"cannot assign {name} {version}: no such published version")
        self.repo(vehicle_id)  # validates the id
        if version is not None:
            # Refused here, naming the remedy, rather than reported as an attack by the car.
            refuse_below_counter(
                name,
                version,
                release_counter(self.store, name, version),
                self._running_counter(vehicle_id, name),
                f"{vehicle_id} runs",
            )
        self.store.set_assignment(vehicle_id, name, version)
        log.info("director: %s -> %s %s", vehicle_id, name, version or "(default)")

    def _running_counter(self, vehicle_id: str, name: str) -> int:
        """The release counter of ``name`` the vehicle runs: from its verified manifest, else from the
        version the inventory learned from its reports (as signed in the image repository)."""
        counters = [0]
        manifest = self.store.get_manifest(vehicle_id)
        if manifest is not None:
            try:
                counters += [
                    int(i.get("release_counter", 0))
                    for i in json.loads(manifest.manifest_json).get("installed", [])
                    if i.get("name") == name
                ]
            except (ValueError, TypeError, AttributeError):
                pass
        known = self.store.get_vehicle(vehicle_id)
        if known is not None and name in known.installed:
            counters.append(release_counter(self.store, name, known.installed[name][0]) or 0)
        return max(counters)

    def assigned(self, vehicle_id: str, wanted: Iterable[str] = ()) -> dict[str, ModelRecord]:
        """The explicit assignments of a vehicle (restricted to ``wanted`` models if any)."""
        wanted = set(wanted)
        out = {}
        for name, version in self.store.get_assignments(vehicle_id).items():
            rec = self.store.get_model(name, version)
            if rec is not None and (not wanted or name in wanted):
                out[name] = rec
        return out

    def desired(self, vehicle_id: str) -> dict[str, TargetFile]:
        """The targets the director instructs this vehicle to run, keyed by target path."""
        vehicle = self.store.get_manifest(vehicle_id)
        if vehicle is None:
            return {}  # no verified manifest yet: nothing is known about its hardware
        chosen = dict(self._default(vehicle_id, vehicle.hardware_id, _installed(vehicle)))
        chosen.update(self.assigned(vehicle_id))
        image = self._image.targets()
        out: dict[str, TargetFile] = {}
        for name, rec in sorted(chosen.items()):
            tf = image.get(rec.target_path)
            if tf is None:
                log.warning(
                    "director: %s %s is not in the image repository; not instructing it",
                    name,
                    rec.version,
                )
                continue
            custom: dict[str, Any] = {
                "name": name,
                "version": rec.version,
                "hardware_id": vehicle.hardware_id,
                "release_counter": int((tf.custom or {}).get("release_counter", 0)),
            }
            out[tf.path] = TargetFile(
                tf.length, dict(tf.hashes), tf.path, unrecognized_fields={"custom": custom}
            )
        return out

    def refresh(self, vehicle_id: str) -> None:
        """Sign a new per-vehicle targets version when the instructions changed."""
        repo = self.repo(vehicle_id)
        targets = self.desired(vehicle_id)
        want = {p: t.to_dict() for p, t in targets.items()}

        def unchanged() -> bool:
            have = repo.peek("targets")
            return (
                have is not None
                and {p: t.to_dict() for p, t in have.signed.targets.items()} == want
            )

        # The common check-in changes nothing: answered without the signing lock.
        if unchanged():
            repo.refresh_if_needed()
            return
        with repo.signing():  # two check-ins of one vehicle must not both sign the next version
            if unchanged():
                return
            repo.sign_new_targets(Targets(targets=targets))

    def get_file(self, vehicle_id: str, filename: str) -> bytes:
        """Serve one file of the vehicle's director chain (refreshing it on ``timestamp.json``)."""
        if filename == "timestamp.json":
            self.refresh(vehicle_id)
        try:
            return self.repo(vehicle_id).get_file(filename, refresh=False)  # refreshed just above
        except TufError:
            raise FileNotFoundError(filename) from None

    # -- manifests -----------------------------------------------------------------------------
    def process_manifest(
        self, msg: ota_pb2.SignedManifest, peer: tls.Identity | None, peer_cert: bytes | None
    ) -> ManifestRecord:
        """Verify a vehicle version manifest and remember it; raise a ``RegistryError`` if it fails."""
        if len(msg.signed) > MAX_MANIFEST_BYTES:
            raise InvalidArgument(
                f"manifest is {len(msg.signed)} B; the limit is {MAX_MANIFEST_BYTES} B"
            )
        cert = bytes(msg.certificate_pem)
        if self._ca_pem is None:
            raise PermissionDenied(
                "the director has no fleet CA configured; it cannot verify manifests"
            )
        try:
            ident = tls.verify_issued_by(cert, self._ca_pem)
            tls.verify_signature(cert, bytes(msg.signed), bytes(msg.signature))
        except tls.TlsError as e:
            raise PermissionDenied(f"manifest refused: {e}") from None
        if ident.role != "vehicle":
            raise PermissionDenied(
                f"manifest signed by a {ident.role} certificate, not a vehicle's"
            )
        if peer is not None and (
            peer != ident or (peer_cert is not None and peer_cert.strip() != cert.strip())
        ):
            raise PermissionDenied(
                f"manifest of {ident.name} submitted over the connection of {peer.name}"
            )
        try:
            body = json.loads(msg.signed)
            vehicle_id, hardware_id, counter = (
                body["vehicle_id"],
                body["hardware_id"],
                body["counter"],
            )
            installed, attacks = body.get("installed", []), body.get("attacks", [])
            if not (
                isinstance(vehicle_id, str)
                and isinstance(hardware_id, str)
                and isinstance(counter, int)
                and isinstance(installed, list)
                and isinstance(attacks, list)
            ):
                raise TypeError("field of the wrong type")
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"manifest is malformed: {e}") from None
        if vehicle_id != ident.name:
            raise PermissionDenied(
                f"manifest names vehicle {vehicle_id!r} but is signed by {ident.name!r}"
            )
        rec = ManifestRecord(
            vehicle_id, hardware_id, counter, msg.signed.decode(), tuple(str(a) for a in attacks)
        )
        if not self.store.accept_manifest(rec):
            held = self.store.get_manifest(vehicle_id)
            raise Replay(
                f"manifest counter {counter} is not above {held.counter if held else 0}: "
                "a replayed or reordered manifest"
            )
        if attacks:
            log.warning(
                "director: vehicle %s reports attacks: %s", vehicle_id, "; ".join(rec.attacks)
            )
        return rec


def _installed(rec: ManifestRecord) -> dict[str, tuple[str, str]]:
    """{name: (version, sha256)} from a verified manifest."""
    try:
        items = json.loads(rec.manifest_json).get("installed", [])
        return {str(i["name"]): (str(i["version"]), str(i["sha256"])) for i in items}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
