"""What the agent may install: the image repository and the director must agree.

Uptane's rule, on top of two python-tuf ``Updater``s over the gRPC fetcher:

- the **image repository** (offline-signed) says which bytes exist;
- the **director** (one online key, per-vehicle metadata) says what this
  vehicle must install.

A director target is installable only when the image repository signs the
same path with the same length and hashes, both name this vehicle's hardware,
and the image-signed release counter is not below the one installed (no
downgrade, even to a signed older version: a rollback is published as a new
release with a higher counter). Everything else is refused and remembered as a
detected attack, reported in the next signed version manifest.

State kept in ``STATE/trust.json`` (atomic writes): installed release
counters, the manifest counter, attacks not yet reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from modelpack.fsio import atomic_write_bytes, atomic_write_text, fsync_dir
from otawire import tls
from vehicle_agent.fetcher import DIRECTOR_URL, METADATA_URL, TARGET_URL
from vehicle_agent.manifest import InstalledImage, VersionManifest, sign_manifest
from vehicle_agent.transport import RegistryClient, TransportError

if TYPE_CHECKING:
    from vehicle_agent.engine import Rebuilder
    from vehicle_agent.journal import Job

log = logging.getLogger(__name__)

MAX_ATTACKS_KEPT = 32


class TrustError(Exception):
    """Check-in could not establish what to install; ``attack`` when evidence of tampering."""

    def __init__(self, message: str, attack: bool, unreachable: bool = False) -> None:
        super().__init__(message)
        self.attack = attack
        self.unreachable = unreachable  # the registry is not listening (see TransportError)


@dataclass(frozen=True)
class Instruction:
    """One director instruction, cross-checked against the image repository."""

    name: str
    version: str
    target: TargetFile  # the image repository's target (what downloads are verified against)
    release_counter: int
    refusal: str = ""  # why it must not be installed (an attack), or "" when it may be


@dataclass
class TrustState:
    release_counters: dict[str, int] = field(default_factory=dict)
    manifest_counter: int = 0
    attacks: list[str] = field(default_factory=list)


class DurableUpdater(Updater):
    """python-tuf's ``Updater`` with durable local metadata.

    python-tuf (7.0) persists ``timestamp.json``, ``snapshot.json``, ``targets.json`` and
    ``root_history/N.root.json`` through a temporary file renamed into place without an
    fsync, and repoints the ``root.json`` symlink by unlinking it first: after a power cut
    a file can be there but empty (the rename reached the disk, the data did not), and an
    empty root leaves the agent without a trust chain. Here every file goes through
    ``modelpack.fsio.atomic_write_bytes`` (fsynced temporary file, rename, directory fsync),
    an unchanged file is not rewritten (python-tuf rewrites the trusted root on every
    start), and ``root.json`` is repointed by renaming a new symlink over it.
    """

    def _persist_file(self, filename: str, data: bytes) -> None:
        try:
            with open(filename, "rb") as f:
                if f.read(len(data) + 1) == data:
                    return
        except OSError:
            pass
        atomic_write_bytes(Path(filename), data)
        if Path(filename).parent != Path(self._dir):  # root_history/, perhaps just made
            fsync_dir(Path(self._dir))

    def _update_root_symlink(self) -> None:
        link = os.path.join(self._dir, "root.json")
        current = os.path.join("root_history", f"{self._trusted_set.root.version}.root.json")
        if os.path.islink(link) and os.readlink(link) == current:
            return
        tmp = f"{link}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(current, tmp)
        os.replace(tmp, link)
        fsync_dir(Path(self._dir))


class TrustedRepos:
    """Both repositories' metadata for one vehicle, and the rules that join them."""

    def __init__(
        self,
        state_dir: Path,
        client: RegistryClient,
        vehicle_id: str,
        hardware_id: str,
        identity: tls.TlsFiles | None,
        image_root: Path | None,
        director_root: Path | None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.client = client
        self.vehicle_id = vehicle_id
        self.hardware_id = hardware_id
        self.identity = identity
        self.image_dir = self.state_dir / "tuf"
        self.director_dir = self.state_dir / "tuf-director"
        self._state_file = self.state_dir / "trust.json"
        _bootstrap(
            self.image_dir, image_root, "--trusted-root ROOT.json (the keystore's root.json)"
        )
        _bootstrap(
            self.director_dir,
            director_root,
            "--director-root DIRECTOR-ROOT.json (the keystore's director-root.json)",
        )
        self.state = self._load()

    # -- persisted state ------------------------------------------------------------------
    def _load(self) -> TrustState:
        if not self._state_file.exists():
            return TrustState()
        return TrustState(**json.loads(self._state_file.read_text()))

    def _save(self) -> None:
        atomic_write_text(
            self._state_file, json.dumps(asdict(self.state), indent=1, sort_keys=True)
        )

    def note_attack(self, reason: str) -> None:
        """Remember a detected attack until a manifest carrying it is accepted."""
        log.error("attack detected: %s", reason)
        self.state.attacks = [*self.state.attacks, reason][-MAX_ATTACKS_KEPT:]
        self._save()

    def record_installed(self, name: str, release_counter: int) -> None:
        self.state.release_counters[name] = max(
            release_counter, self.state.release_counters.get(name, 0)
        )
        self._save()

    # -- metadata -----------------------------------------------------------------------------
    def updater(self, which: str, fetcher: FetcherInterface, target_dir: Path) -> Updater:
        return DurableUpdater(
            metadata_dir=str(self.image_dir if which == "image" else self.director_dir),
            metadata_base_url=METADATA_URL if which == "image" else DIRECTOR_URL,
            target_base_url=TARGET_URL,
            target_dir=str(target_dir),
            fetcher=fetcher,
            config=UpdaterConfig(),
            bootstrap=None,
        )

    def send_manifest(self, installed: dict[str, tuple[str, str]]) -> None:
        """Sign and submit the version manifest; raise TrustError when it is not accepted."""
        if self.identity is None:
            raise TrustError(
                "no vehicle certificate/key to sign the version manifest with", attack=False
            )
        # Counter: strictly increasing even if the state directory is lost (wall-clock floor).
        counter = max(self.state.manifest_counter + 1, int(time.time() * 1000))
        attacks = tuple(self.state.attacks)
        manifest = VersionManifest(
            vehicle_id=self.vehicle_id,
            hardware_id=self.hardware_id,
            counter=counter,
            installed=tuple(
                InstalledImage(n, v, sha, self.state.release_counters.get(n, 0))
                for n, (v, sha) in sorted(installed.items())
            ),
            attacks=attacks,
        )
        self.state.manifest_counter = counter
        self._save()
        try:
            self.client.submit_manifest(sign_manifest(manifest, self.identity))
        except TransportError as e:
            raise TrustError(
                f"version manifest not accepted: {e}", attack=False, unreachable=e.unreachable
            ) from None
        self.state.attacks = [a for a in self.state.attacks if a not in attacks]
        self._save()

    def instructions(self, image: Updater) -> list[Instruction]:
        """The director's targets (freshly refreshed), each checked against the image repository."""
        data = (self.director_dir / "targets.json").read_bytes()
        director: Targets = Metadata[Targets].from_bytes(data).signed
        out = []
        for path, dt in sorted(director.targets.items()):
            custom = dt.custom or {}
            name, version = str(custom.get("name", "")), str(custom.get("version", ""))
            it = image.get_targetinfo(path)
            refusal = ""
            counter = 0
            if it is None:
                refusal = f"director instructs {path}, which the image repository did not sign"
            else:
                icustom = it.custom or {}
                counter = int(icustom.get("release_counter", 0))
                hw = icustom.get("hardware_ids") or []
                if it.length != dt.length or it.hashes != dt.hashes:
                    refusal = f"director and image repository disagree on {path} (length/hashes)"
                elif (icustom.get("name"), icustom.get("version")) != (name, version):
                    refusal = (
                        f"director names {path} {name} {version}, the image repository "
                        f"{icustom.get('name')} {icustom.get('version')}"
                    )
                elif custom.get("hardware_id") != self.hardware_id or (
                    hw and self.hardware_id not in hw
                ):
                    refusal = (
                        f"{path} is not for this hardware ({self.hardware_id}): director says "
                        f"{custom.get('hardware_id')!r}, image repository {hw}"
                    )
                elif counter < self.state.release_counters.get(name, 0):
                    refusal = (
                        f"rollback refused: {name} {version} has release counter {counter}, "
                        f"below the installed {self.state.release_counters[name]}"
                    )
            out.append(Instruction(name, version, it if it is not None else dt, counter, refusal))
        return out


class AttackNotingRebuilder:
    """Wraps the engine's ``Rebuilder``: an encoding (delta) that the codec refuses, or that
    rebuilds other bytes than the signed ones, is remembered as an attack before the engine
    falls back to the full model; so it is reported, not only survived."""

    REFUSALS = ("encoding refused",)

    def __init__(self, inner: Rebuilder, trust: TrustedRepos) -> None:
        self._inner = inner
        self._trust = trust

    def rebuild(self, job: Job, encoded: Path) -> Path:
        from vehicle_agent.engine import StepFailed

        try:
            built = self._inner.rebuild(job, encoded)
        except StepFailed as e:
            if e.reason.startswith(self.REFUSALS):
                self._trust.note_attack(f"{job.name} {job.version} {job.encoding}: {e.reason}")
            raise
        if job.encoding != "full" and _sha256_of(built) != job.sha256:
            reason = f"{job.name} {job.version} {job.encoding}: rebuilt model does not match its signed hash"
            self._trust.note_attack(reason)
            raise StepFailed(reason)
        return built


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bootstrap(tuf_dir: Path, root: Path | None, how: str) -> None:
    tuf_dir.mkdir(parents=True, exist_ok=True)
    if (tuf_dir / "root.json").exists():
        return
    if root is None or not Path(root).exists():
        raise TrustError(f"no trusted root in {tuf_dir}: provision one with {how}", attack=False)
    atomic_write_bytes(tuf_dir / "root.json", Path(root).read_bytes())
