"""The vehicle agent: wires the update engine to gRPC, TUF, the disk and ONNX Runtime.

Long file: the one place where the engine, the two TUF clients, the transport, the slots and
the runtime meet; each concern lives in its own module and this file only wires them.

One update cycle (``update_once``):

1. Judge the health window of an earlier install (confirm or roll back).
2. Send the signed version manifest, ask the registry for download hints
   (encodings), then refresh the image repository's and the director's TUF
   metadata (python-tuf ``Updater``s over the gRPC fetcher). What to install is
   what the director instructs *and* the image repository signs identically
   (``trust.py``); each instruction becomes a ``Job`` made only of signed facts.
4. Hand the job to the ``UpdateEngine`` (``engine.py``): download (resumable),
   verify, stage into the inactive A/B slot, load + self-test beside the
   running model, switch, watch the health window. Every step is journalled
   and reported.

On start the agent loads the active slot of each model (falling back to the
other slot if it is damaged) and lets the engine finish or undo whatever a
power cut interrupted. Any failure leaves the previous model served.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from otawire import tls
from otawire.v1 import ota_pb2
from otawire.wire import ENCODING, from_strs, to_str
from vehicle_agent.disk import SlotDisk
from vehicle_agent.download import HashVerifier, RetryPolicy, TargetFetcher
from vehicle_agent.engine import EnginePolicy, Rebuilder, UpdateEngine
from vehicle_agent.fetcher import GrpcFetcher
from vehicle_agent.health import HealthPolicy
from vehicle_agent.journal import TERMINAL, Entry, Job, Journal, State
from vehicle_agent.rebuild import CodecRebuilder, decodable, encoding_bound, offered_fallback
from vehicle_agent.reporting import RegistryReporter, encoding_pb, install_status
from vehicle_agent.runtime import LoadedModel, ModelHost, OrtRuntime, SelfTestFailed, model_info
from vehicle_agent.slots import SlotRecord, SlotStore
from vehicle_agent.transport import RegistryClient, TransportConfig, TransportError
from vehicle_agent.trust import AttackNotingRebuilder, Instruction, TrustedRepos, TrustError

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (model name, done, total)


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
    # 0 = confirm right after the self-test (one-shot runs); the service uses a real window.
    health: HealthPolicy = HealthPolicy(window_s=0.0)
    retry: RetryPolicy = RetryPolicy()
    transport: TransportConfig = TransportConfig()
    engine: EnginePolicy = EnginePolicy()
    # security (issue 4): the director's root, the vehicle's certificate (mutual
    # TLS and manifest signing), and plain text only on explicit request.
    director_root: Path | None = None
    identity: tls.TlsFiles | None = None
    insecure: bool = False
    memory_budget_mb: float | None = None  # None: the cgroup's memory limit, if any (memory.py)


@dataclass
class UpdateOutcome:
    """What one update attempt of one model did, with measured figures."""

    name: str
    version: str
    from_version: str
    status: str  # "installed" | "failed" | "attack_detected" | "rolled_back"
    reason: str = ""
    encoding: str = "full"
    bytes_downloaded: int = 0
    length: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    state: str = ""  # the journal's state after the attempt ("active" = health window running)
    verify_failures: int = 0  # downloads that did not match the signed hash and were fetched again
    bytes_discarded: int = (
        0  # over the wire for an encoding that failed (then the full model was fetched)
    )

    @property
    def duration_s(self) -> float:
        return sum(self.timings.values())


class VehicleAgent:
    def __init__(
        self,
        config: AgentConfig,
        client: RegistryClient | None = None,
        rebuilder: Rebuilder | None = None,
    ) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.slots = SlotStore(self.state_dir)
        self._downloads = self.state_dir / "downloads"
        try:
            self.client = client or RegistryClient(
                config.registry,
                config.transport,
                insecure=config.insecure,
                tls_files=None if config.insecure else config.identity,
            )
            self.trust = TrustedRepos(
                self.state_dir,
                self.client,
                config.vehicle_id,
                config.hardware_id,
                config.identity,
                config.trusted_root,
                config.director_root,
            )
        except (tls.TlsError, TrustError) as e:
            raise AgentError(str(e)) from None
        self.host = ModelHost()
        self.journal = Journal(self.state_dir)
        self.fetcher = TargetFetcher(self.client, self._downloads, config.vehicle_id, config.retry)
        self.runtime = OrtRuntime(self.host, self.slots, config.health, config.memory_budget_mb)
        self.reporter = RegistryReporter(
            self.client, config.vehicle_id, config.hardware_id, self.host, self.fetcher
        )
        self.engine = UpdateEngine(
            self.journal,
            SlotDisk(self.slots, self._downloads, self.fetcher.have),
            self.fetcher,
            HashVerifier(),
            self.runtime,
            self.reporter,
            # security (issue 4): a tampered or wrong-base encoding is reported, not only fallen back from.
            rebuilder=AttackNotingRebuilder(
                rebuilder or CodecRebuilder(self.slots, self._downloads), self.trust
            ),
            policy=config.engine,
        )
        self._load_active()
        self.engine.recover()

    @property
    def models(self) -> dict[str, LoadedModel]:
        return self.host.current()

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
                    loaded = self.runtime.load_slot(name, slot)
                except Exception as e:
                    log.error("%s: slot %s does not load: %s", name, slot, e)
                    continue
                if slot != m.active:
                    self.slots.activate(name, slot)
                    log.warning("%s: fell back to slot %s (%s)", name, slot, rec.version)
                self.host.swap(name, loaded)
                self.host.drop_previous(name)
                break

    def installed(self) -> dict[str, SlotRecord]:
        out = {}
        for name, m in self.slots.load().items():
            rec = m.active_record()
            if rec is not None:
                out[name] = rec
        return out

    # -- one update cycle -----------------------------------------------------------------
    def _send_manifest(self, installed: dict[str, SlotRecord], last_try: bool) -> bool:
        try:
            self.trust.send_manifest({n: (r.version, r.sha256) for n, r in installed.items()})
            return True
        except TrustError as e:
            log.log(
                # Not listening: the check-in right after says so, once, with the fix.
                logging.INFO if e.unreachable and not last_try else logging.WARNING,
                "%s; %s",
                e,
                "the director instructs from the last manifest it accepted"
                if last_try
                else "trying again after the check-in",
            )
            return False

    def _updater(self, which: str = "image") -> Updater:
        return self.trust.updater(
            which,
            GrpcFetcher(self.client, self.config.vehicle_id, tmp_dir=self.state_dir / "tmp"),
            self._downloads,
        )

    def _refresh(self, which: str) -> Updater:
        try:
            updater = self._updater(which)
            updater.refresh()
            return updater
        except (tuf_exc.RepositoryError, tuf_exc.DownloadError) as e:
            # Bad signatures/versions/expiry, and more bytes than a file may have, are
            # evidence of tampering; an unreachable or slow registry is not (yet).
            attack = isinstance(e, (tuf_exc.RepositoryError, tuf_exc.DownloadLengthMismatchError))
            raise TrustError(
                f"{which} metadata refresh failed: {type(e).__name__}: {e}", attack=attack
            ) from None

    def poll(self) -> list[Entry]:
        """Judge running health windows; cheap, call it often."""
        return [self.engine.poll(e.name) for e in self.journal.entries() if e.state == State.ACTIVE]

    def update_once(self, progress: ProgressFn | None = None) -> list[UpdateOutcome]:
        """Check in once and install what is offered; never raises for a bad update."""
        self.poll()
        t0 = time.perf_counter()
        installed = self.installed()
        # security (issue 4): the signed manifest first (it carries the attacks seen so far,
        # reported even while metadata is blocked); the director instructs from it.
        manifest_sent = self._send_manifest(installed, last_try=False)
        req = ota_pb2.CheckForUpdateRequest(
            vehicle_id=self.config.vehicle_id,
            hardware_id=self.config.hardware_id,
            installed=[
                ota_pb2.InstalledModel(name=n, version=r.version, sha256=r.sha256)
                for n, r in installed.items()
            ],
            wanted_models=list(self.config.wanted_models),
            tags=list(self.config.tags),
            accepted_encodings=from_strs(ENCODING, ["full", *decodable()], skip_unknown=True),
        )
        hints, lost = self._offers(req)
        if lost is not None:
            if lost.unreachable:
                # Nothing listens there: metadata downloads would only wait out their stall
                # timeouts and blame a "stalled download". Say what is wrong; try next cycle.
                # Logged at INFO: the caller shows the outcome (``ota agent run`` prints it).
                log.info("%s; keeping current models until it answers", lost)
                return [UpdateOutcome("*", "", "", "failed", str(lost))]
            # Offers only pick an encoding; the signed instructions stand without them.
            log.warning("%s", lost)
        if not manifest_sent:  # e.g. the first connection of a slow link timed out: try once more
            self._send_manifest(installed, last_try=True)
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
        unoffered = [
            ins
            for ins in instructions
            if self._needs(ins, installed) and ins.target.path not in hints
        ]
        if (lost is not None and lost.transient) or (lost is None and unoffered):
            # Ask again: the link broke under the check-in and has carried the metadata since,
            # or the offers were asked before the refresh brought a version they did not know
            # of yet (assigned in between). Either way the full model would be fetched where a
            # small delta is on offer: 10x the bytes.
            hints, lost = self._offers(req)
        t_refresh = time.perf_counter() - t0
        outcomes = []
        for ins in instructions:
            job: Job | UpdateOutcome
            cur = installed.get(ins.name)
            if self.config.wanted_models and ins.name not in self.config.wanted_models:
                continue
            if cur is not None and cur.sha256 == ins.target.hashes.get("sha256"):
                continue
            if ins.refusal:  # the two repositories disagree, or a rollback: an attack
                self.trust.note_attack(ins.refusal)
                job = UpdateOutcome(
                    ins.name,
                    ins.version,
                    cur.version if cur else "",
                    "attack_detected",
                    ins.refusal,
                    length=ins.target.length,
                )
            elif (
                lost is not None
                and lost.transient
                and ins.target.path not in hints
                and not self._in_flight(ins.name, ins.target)
            ):
                # No offer because the link broke, not because there is none: a transient
                # error is no reason to fetch the full model instead of the encoding (10x the
                # bytes on a flaky link). The next check-in asks again.
                job = UpdateOutcome(
                    ins.name,
                    ins.version,
                    cur.version if cur else "",
                    "failed",
                    f"no download offer ({lost}); waiting for the next check-in rather than "
                    f"fetching the full {ins.target.length:,} B model",
                    length=ins.target.length,
                )
                job.timings = {"metadata": time.perf_counter() - t0}
                outcomes.append(job)  # not reported: the link to the registry just broke
                continue
            else:
                offer = hints.get(ins.target.path) or ota_pb2.UpdateOffer(
                    name=ins.name, version=ins.version, target_path=ins.target.path
                )
                job = self._job(ins.target, offer, cur.version if cur else "")
            if isinstance(job, UpdateOutcome):
                job.timings = {"metadata": t_refresh}
                self._report(job)
                outcomes.append(job)
                continue
            if self.journal.get(job.name).state == State.ACTIVE:
                log.info(
                    "%s: %s offered while a health window runs; it waits for the next check-in",
                    job.name,
                    job.version,
                )
                continue
            if (why := self.journal.rejected(job.sha256)) is not None:
                log.info(
                    "%s %s was rejected before (%s); not installing it again",
                    job.name,
                    job.version,
                    why,
                )
                continue
            outcome = self._install(job, cur.version if cur else "", progress)
            outcome.timings = {"metadata": t_refresh, **outcome.timings}
            if outcome.status == "installed":
                self.trust.record_installed(ins.name, ins.release_counter)
            elif outcome.status == "attack_detected":
                self.trust.note_attack(f"{ins.name} {ins.version}: {outcome.reason}")
            outcomes.append(outcome)
        return outcomes

    def _needs(self, ins: Instruction, installed: dict[str, SlotRecord]) -> bool:
        """Whether an instruction asks this car to install something it does not have."""
        if ins.refusal or (self.config.wanted_models and ins.name not in self.config.wanted_models):
            return False
        cur = installed.get(ins.name)
        return cur is None or cur.sha256 != ins.target.hashes.get("sha256")

    def _offers(
        self, req: ota_pb2.CheckForUpdateRequest
    ) -> tuple[dict[str, ota_pb2.UpdateOffer], TransportError | None]:
        """The registry's download hints by target path, or none and why the check-in failed."""
        try:
            return {o.target_path: o for o in self.client.check(req).offers}, None
        except TransportError as e:
            return {}, e

    def _in_flight(self, name: str, target: TargetFile) -> bool:
        """Whether a job for ``target``'s bytes is under way (it resumes in its own encoding)."""
        entry = self.journal.get(name)
        return (
            entry.state not in TERMINAL
            and entry.job is not None
            and entry.job.sha256 == target.hashes.get("sha256")
        )

    def _job(
        self, target: TargetFile, offer: ota_pb2.UpdateOffer, from_version: str
    ) -> Job | UpdateOutcome:
        """A verified instruction (``target``: the image repository's) as a Job of signed facts only."""
        out = UpdateOutcome(offer.name, offer.version, from_version, "failed", length=target.length)
        custom = target.custom or {}
        hw = custom.get("hardware_ids") or []
        if hw and self.config.hardware_id not in hw:
            out.reason = f"signed for hardware {hw}, this vehicle is {self.config.hardware_id}"
            return out
        if custom.get("name", offer.name) != offer.name:
            out.status, out.reason = (
                "attack_detected",
                f"target {target.path} is signed for model {custom.get('name')!r}",
            )
            return out
        try:
            info = _signed_model_info(custom)
            model_info(info)
        except SelfTestFailed as e:
            out.reason = str(e)
            return out
        job = Job(
            name=offer.name,
            version=custom.get("version", offer.version),
            sha256=target.hashes["sha256"],
            length=target.length,
            target_path=target.path,
            model_info=info,
        ).full()
        return self._encoded(job, offer) or job

    def _encoded(self, job: Job, offer: ota_pb2.UpdateOffer) -> Job | None:
        """The offered encoding as the way to fetch ``job``, when its decoder runs here. The offer is
        unsigned: its length is bounded by the signed one, a delta must name the installed model as its
        base, and the rebuilt bytes are verified against the signed hash whatever the offer said."""
        encoding = to_str(ENCODING, offer.encoding)
        if encoding in ("", "full") or not offer.download_path or encoding not in decodable():
            return None
        if not 0 < offer.download_length <= encoding_bound(job.length):
            log.warning(
                "%s %s: %s encoding of %d B is not bounded by the signed length; fetching the full model",
                job.name,
                job.version,
                encoding,
                offer.download_length,
            )
            return None
        if offer.base_sha256:
            cur = self.installed().get(job.name)
            if cur is None or cur.sha256 != offer.base_sha256:
                log.warning(
                    "%s %s: delta is for another base than the installed model; fetching the full model",
                    job.name,
                    job.version,
                )
                return None
        return dataclasses.replace(
            job,
            encoding=encoding,
            download_path=offer.download_path,
            download_length=offer.download_length,
            base_sha256=offer.base_sha256,
            **offered_fallback(offer, job.length),
        )

    def _install(self, job: Job, from_version: str, progress: ProgressFn | None) -> UpdateOutcome:
        t = time.perf_counter()
        before = dict(self.fetcher.fetched)
        entry = self.engine.install(
            job, (lambda d, n: progress(job.name, d, n)) if progress else None, from_version
        )
        timings = {"install": time.perf_counter() - t}
        if entry.state == State.ACTIVE and self.config.health.window_s <= 0:
            t = time.perf_counter()
            entry = self.engine.poll(job.name)
            timings["confirm"] = time.perf_counter() - t
        status = {
            State.ACTIVE: "installed",
            State.CONFIRMED: "installed",
            State.ROLLED_BACK: "rolled_back",
        }.get(entry.state, entry.status or "failed")
        final = entry.job or job
        wire = {
            k: n - before.get(k, 0) for k, n in self.fetcher.fetched.items() if k[0] == job.sha256
        }
        used = wire.pop((job.sha256, final.encoding), 0)
        return UpdateOutcome(
            job.name,
            job.version,
            from_version,
            status,
            entry.reason if status != "installed" else "",
            encoding=final.encoding,
            bytes_downloaded=used,
            bytes_discarded=sum(wire.values()),
            length=job.length,
            timings=timings,
            state=str(entry.state),
            verify_failures=entry.verify_failures,
        )

    def _report(self, out: UpdateOutcome) -> None:
        active = self.host.get(out.name)
        self.client.report(
            ota_pb2.ReportInstallRequest(
                vehicle_id=self.config.vehicle_id,
                hardware_id=self.config.hardware_id,
                name=out.name,
                version=out.version,
                status=install_status(out.status),
                reason=out.reason,
                from_version=out.from_version,
                encoding=encoding_pb(out.encoding),
                active_version=active.version if active else "",
            )
        )

    def serve(self, socket_path: Path) -> grpc.Server:
        """Serve inference on a Unix socket; models swap underneath it."""
        from vehicle_agent.serving import serve

        return serve(self.host, socket_path, lambda name: str(self.journal.get(name).state))

    def run_forever(
        self,
        stop: threading.Event,
        interval_s: float = 60.0,
        poll_s: float = 0.5,
        on_outcomes: Callable[[list[UpdateOutcome]], None] | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Check in every ``interval_s`` and judge health windows every ``poll_s``, until ``stop``."""
        next_check = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_check:
                outcomes = self.update_once(progress)
                if on_outcomes:
                    on_outcomes(outcomes)
                next_check = time.monotonic() + interval_s
            else:
                self.poll()
            stop.wait(max(0.0, min(poll_s, next_check - time.monotonic())))

    def classify(self, name: str, image: Path, k: int = 5) -> list:
        """Top-k predictions of the served ``name`` model: what the perception stack sees."""
        from modelpack.classify import top_k
        from modelpack.imaging import load_image, load_labels, preprocess

        model = self.host.get(name)
        if model is None:
            raise AgentError(f"no active model {name!r} on this vehicle")
        x = preprocess(load_image(image), model.info.preprocessing)
        scores, model = self.host.run(name, x)
        return top_k(scores[0], load_labels(model.info.labels), k)

    def close(self) -> None:
        self.client.close()


def _signed_model_info(custom: dict) -> dict:
    text = custom.get("model_info_json") or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SelfTestFailed(f"signed model_info_json is not JSON: {e}") from None
    return value if isinstance(value, dict) else {}
