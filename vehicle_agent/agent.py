"""The vehicle agent: check in, verify through TUF, stage, self-test, switch, report.

One update cycle (``update_once``):

1. Refresh the image repository's TUF metadata (python-tuf's ``Updater`` over
   the gRPC fetcher), send the signed version manifest, refresh the director's
   per-vehicle metadata (``vehicle_agent/trust.py``). What to install is what
   the director instructs *and* the image repository signs identically.
2. Ask the registry for download hints (encodings); they are only hints.
3. Download the target (resumable), verify length and sha256 against the
   signed target, and stage it into the inactive A/B slot.
4. Load it in ONNX Runtime and run the signed self-test.
5. Switch the active slot atomically, then report the result.

Any failure leaves the previous model active and is reported with its reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from modelpack.metadata import ModelInfo
from ota import tls
from ota.v1 import ota_pb2
from vehicle_agent.download import DownloadFailed, download_target
from vehicle_agent.fetcher import GrpcFetcher
from vehicle_agent.rebuild import Rebuilt, fetch_and_rebuild
from vehicle_agent.runtime import LoadedModel, SelfTestFailed, load_session, self_test
from vehicle_agent.slots import SlotRecord, SlotStore
from vehicle_agent.transport import RegistryClient, TransportError
from vehicle_agent.trust import Instruction, TrustedRepos, TrustError

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (model name, done, total)
# Reasons of fetch_and_rebuild that mean the encoding was tampered with (not merely unusable).
TAMPERED_ENCODING = ("encoding refused", "rebuilt model does not match", "registry sent more than")


class AgentError(Exception):
    pass


@dataclass(frozen=True)
class AgentConfig:
    registry: str
    state_dir: Path
    vehicle_id: str = "vehicle-0001"
    hardware_id: str = "generic-x86_64"
    wanted_models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # reported at check-in; rollout campaigns select by them
    trusted_root: Path | None = None  # provisioned at the factory; needed once
    # security (issue 4): the director's root, the vehicle's certificate (mutual
    # TLS and manifest signing), and plain text only on explicit request.
    director_root: Path | None = None
    identity: tls.TlsFiles | None = None
    insecure: bool = False


@dataclass
class UpdateOutcome:
    """What one update attempt of one model did, with measured figures."""

    name: str
    version: str
    from_version: str
    status: str  # "installed" | "failed" | "attack_detected"
    reason: str = ""
    encoding: str = "full"
    bytes_downloaded: int = 0
    length: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return sum(self.timings.values())


_STATUS = {
    "downloading": ota_pb2.INSTALL_STATUS_DOWNLOADING,
    "installed": ota_pb2.INSTALL_STATUS_INSTALLED,
    "failed": ota_pb2.INSTALL_STATUS_FAILED,
    "attack_detected": ota_pb2.INSTALL_STATUS_ATTACK_DETECTED,
}


class VehicleAgent:
    def __init__(self, config: AgentConfig, client: RegistryClient | None = None) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.slots = SlotStore(self.state_dir)
        self._downloads = self.state_dir / "downloads"
        try:
            self.client = client or RegistryClient(
                config.registry, tls_files=None if config.insecure else config.identity, insecure=config.insecure
            )
            self.trust = TrustedRepos(self.state_dir, self.client, config.vehicle_id, config.hardware_id,
                                      config.identity, config.trusted_root, config.director_root)
        except (tls.TlsError, TrustError) as e:
            raise AgentError(str(e)) from None
        self.models: dict[str, LoadedModel] = {}
        self._load_active()

    # -- start-up -------------------------------------------------------------------
    def _load_active(self) -> None:
        """Load the active model of each slot set; fall back to the other slot if damaged."""
        for name, m in self.slots.load().items():
            for slot in [m.active, m.inactive()] if m.active else []:
                rec = m.slots.get(slot)
                if rec is None or not self.slots.verify(name, slot):
                    log.error("%s: slot %s is missing or damaged; not loading it", name, slot)
                    continue
                try:
                    session = load_session(self.slots.model_path(name, slot))
                except Exception as e:
                    log.error("%s: slot %s does not load: %s", name, slot, e)
                    continue
                if slot != m.active:
                    self.slots.activate(name, slot)
                    log.warning("%s: fell back to slot %s (%s)", name, slot, rec.version)
                self.models[name] = LoadedModel(session, _info(rec.model_info), rec.version, rec.sha256)
                break

    def installed(self) -> dict[str, SlotRecord]:
        out = {}
        for name, m in self.slots.load().items():
            rec = m.active_record()
            if rec is not None:
                out[name] = rec
        return out

    # -- one update cycle -----------------------------------------------------------------
    def _updater(self, which: str = "image") -> Updater:
        return self.trust.updater(which, GrpcFetcher(self.client, self.config.vehicle_id), self._downloads)

    def _refresh(self, which: str) -> Updater:
        try:
            updater = self._updater(which)
            updater.refresh()
            return updater
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as e:
            # Bad signatures/versions/expiry, and more bytes than a file may have, are
            # evidence of tampering; an unreachable or slow registry is not (yet).
            attack = isinstance(e, (tuf_exc.RepositoryError, tuf_exc.DownloadLengthMismatchError))
            raise TrustError(f"{which} metadata refresh failed: {type(e).__name__}: {e}", attack=attack) from None

    def update_once(self, progress: ProgressFn | None = None) -> list[UpdateOutcome]:
        """Check in once and install what is instructed; never raises for a bad update."""
        t0 = time.perf_counter()
        installed = self.installed()
        # security (issue 4): signed manifest (carrying attacks seen so far, so they are
        # reported even while metadata is blocked), image and director metadata, cross-check.
        try:
            self.trust.send_manifest({n: (r.version, r.sha256) for n, r in installed.items()})
        except TrustError as e:
            log.warning("%s; the director instructs from the last manifest it accepted", e)
        req = ota_pb2.CheckRequest(
            vehicle_id=self.config.vehicle_id,
            hardware_id=self.config.hardware_id,
            installed=[ota_pb2.InstalledModel(name=n, version=r.version, sha256=r.sha256) for n, r in installed.items()],
            wanted_models=list(self.config.wanted_models),
            tags=list(self.config.tags),
        )
        try:
            hints = {o.target_path: o for o in self.client.check(req).offers}
        except TransportError as e:
            log.warning("%s", e)
            hints = {}  # offers only pick an encoding; the signed instructions stand without them
        try:
            updater = self._refresh("image")
            self._refresh("director")
            instructions = self.trust.instructions(updater)
        except TrustError as e:
            log.error("check-in failed, keeping current models: %s", e)
            if e.attack:
                self.trust.note_attack(str(e))
            out = UpdateOutcome("*", "", "", "attack_detected" if e.attack else "failed", str(e))
            self._report(out)
            return [out]
        t_refresh = time.perf_counter() - t0
        outcomes = []
        for ins in instructions:
            cur = installed.get(ins.name)
            if self.config.wanted_models and ins.name not in self.config.wanted_models:
                continue
            if cur is not None and cur.sha256 == ins.target.hashes.get("sha256"):
                continue
            outcome = self._install_instruction(ins, hints, cur.version if cur else "", progress)
            outcome.timings = {"metadata": t_refresh, **outcome.timings}
            self._report(outcome)
            outcomes.append(outcome)
        return outcomes

    def _install_instruction(self, ins: Instruction, hints: dict[str, ota_pb2.UpdateOffer], from_version: str,
                             progress: ProgressFn | None) -> UpdateOutcome:
        """security (issue 4): refuse what the two repositories do not agree on; else install."""
        if ins.refusal:
            self.trust.note_attack(ins.refusal)
            return UpdateOutcome(ins.name, ins.version, from_version, "attack_detected", ins.refusal,
                                 length=ins.target.length)
        offer = hints.get(ins.target.path) or ota_pb2.UpdateOffer(
            name=ins.name, version=ins.version, target_path=ins.target.path, length=ins.target.length,
            sha256=ins.target.hashes.get("sha256", ""), encoding="full")
        out = self._install(ins.target, offer, from_version, progress)
        if out.status == "installed":
            self.trust.record_installed(ins.name, ins.release_counter)
        elif out.status == "attack_detected":
            self.trust.note_attack(f"{ins.name} {ins.version}: {out.reason}")
        return out

    def _install(self, target: TargetFile, offer: ota_pb2.UpdateOffer, from_version: str,
                 progress: ProgressFn | None) -> UpdateOutcome:
        out = UpdateOutcome(offer.name, offer.version, from_version, "failed", length=offer.length)
        # 1. Only what TUF signed counts (``target`` comes from verified metadata); the offer is a hint.
        custom = target.custom or {}
        hw = custom.get("hardware_ids") or []
        if hw and self.config.hardware_id not in hw:
            out.status, out.reason = "failed", f"signed for hardware {hw}, this vehicle is {self.config.hardware_id}"
            return out
        if custom.get("name", offer.name) != offer.name:
            out.status, out.reason = "attack_detected", f"target {target.path} is signed for model {custom.get('name')!r}"
            return out
        out.version = custom.get("version", offer.version)
        out.length = target.length
        try:
            model_info = _signed_model_info(custom)
            info = _info(model_info)
        except SelfTestFailed as e:
            out.reason = str(e)
            return out
        # 2. Download and verify against the signed length and hash: the
        # offered encoding (delta) first, rebuilt and checked; else the full file.
        t = time.perf_counter()
        rebuilt = self._fetch_encoded(offer, target)
        if rebuilt is not None:
            result_path, out.bytes_downloaded, out.encoding = rebuilt.path, rebuilt.bytes_fetched, rebuilt.encoding
            out.timings["download+rebuild+verify"] = time.perf_counter() - t
        else:
            try:
                result = download_target(
                    self.client,
                    _download_path(target),
                    target,
                    self._downloads,
                    vehicle_id=self.config.vehicle_id,
                    progress=(lambda done, total: progress(offer.name, done, total)) if progress else None,
                )
            except DownloadFailed as e:
                out.status = "attack_detected" if e.tampered else "failed"
                out.reason = str(e)
                return out
            out.bytes_downloaded = result.bytes_fetched
            out.timings["download+verify"] = time.perf_counter() - t
            result_path = result.path
        # 3. Stage into the inactive slot.
        t = time.perf_counter()
        rec = SlotRecord(
            version=out.version,
            sha256=target.hashes["sha256"],
            length=target.length,
            target_path=target.path,
            model_info=model_info,
        )
        slot = self.slots.stage(offer.name, result_path, rec)
        result_path.unlink(missing_ok=True)
        out.timings["stage"] = time.perf_counter() - t
        # 4. Load and self-test beside the running model.
        t = time.perf_counter()
        try:
            session = load_session(self.slots.model_path(offer.name, slot))
            self_test(session, info)
        except SelfTestFailed as e:
            out.reason = f"self-test failed: {e}"
            return out
        except Exception as e:  # ORT load errors
            out.reason = f"model does not load in ONNX Runtime: {e}"
            return out
        out.timings["load+self-test"] = time.perf_counter() - t
        # 5. Switch atomically.
        t = time.perf_counter()
        self.slots.activate(offer.name, slot)
        self.models[offer.name] = LoadedModel(session, info, rec.version, rec.sha256)
        out.timings["switch"] = time.perf_counter() - t
        out.status = "installed"
        return out

    def _fetch_encoded(self, offer: ota_pb2.UpdateOffer, target: TargetFile) -> Rebuilt | None:
        """The model rebuilt from the offered encoding, or None (then the full file is fetched)."""
        if not offer.encoding or offer.encoding == "full":
            return None
        slots = self.slots.load().get(offer.name)
        installed = self.slots.model_path(offer.name, slots.active) if slots and slots.active else None
        rebuilt, reason = fetch_and_rebuild(self.client, offer, target, installed, self._downloads, self.config.vehicle_id)
        if rebuilt is None:
            log.warning("%s %s: %s; fetching the full model instead", offer.name, offer.version, reason)
            if reason.startswith(TAMPERED_ENCODING):  # security (issue 4): report it, not only fall back
                self.trust.note_attack(f"{offer.name} {offer.version} {offer.encoding}: {reason}")
        return rebuilt

    def _report(self, out: UpdateOutcome) -> None:
        active = self.models.get(out.name)
        self.client.report(
            ota_pb2.InstallReport(
                vehicle_id=self.config.vehicle_id,
                hardware_id=self.config.hardware_id,
                name=out.name,
                version=out.version,
                status=_STATUS.get(out.status, ota_pb2.INSTALL_STATUS_FAILED),
                reason=out.reason,
                from_version=out.from_version,
                encoding=out.encoding,
                bytes_downloaded=out.bytes_downloaded,
                duration_s=out.duration_s,
                active_version=active.version if active else "",
            )
        )

    def classify(self, name: str, image: Path, k: int = 5) -> list:
        """Top-k predictions of the active ``name`` model: what the perception stack sees."""
        from modelpack.classify import top_k
        from modelpack.imaging import load_image, load_labels, preprocess

        model = self.models.get(name)
        if model is None:
            raise AgentError(f"no active model {name!r} on this vehicle")
        x = preprocess(load_image(image), model.info.preprocessing)
        scores = model.session.run(None, {model.info.input_name: x})[0]
        return top_k(scores[0], load_labels(model.info.labels), k)

    def close(self) -> None:
        self.client.close()


def _info(d: dict) -> ModelInfo:
    try:
        return ModelInfo.from_dict(d) if d else ModelInfo()
    except (TypeError, ValueError) as e:
        raise SelfTestFailed(f"signed model_info is malformed: {e}") from None


def _signed_model_info(custom: dict) -> dict:
    text = custom.get("model_info_json") or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SelfTestFailed(f"signed model_info_json is not JSON: {e}") from None
    return value if isinstance(value, dict) else {}


def _download_path(target: TargetFile) -> str:
    directory, sep, base = target.path.rpartition("/")
    return f"{directory}{sep}{target.hashes['sha256']}.{base}"
