"""Load benchmark: N concurrent vehicles against one registry process, and a bare gRPC peer.

What runs (all on this machine, loopback):
- **registry**: the real registry (``Registry.open`` + ``create_server``, SQLite,
  encodings, campaign manager) in its own process, holding new versions for
  campaigns. Published: the real SqueezeNet v1.0 (1.0.0) and its successor with
  a retrained classifier head (1.1.0, ``modelpack.lineage``).
- **lite agents** (in this process, one thread and one gRPC channel each): the
  agent's own transport (``RegistryClient``) and update engine
  (``TargetFetcher`` → ``CodecRebuilder`` → ``HashVerifier``: download the
  offered delta resumably, rebuild, check the TUF-signed sha256 and length;
  the full model as the fallback).
  Labelled *lite* because they skip per-vehicle CPU work that puts no load on
  the registry: the TUF metadata refresh is done once and shared, and ONNX
  Runtime load + self-test are skipped. Files go to /dev/shm so that 1,000
  cars' disks are not one shared disk.
- Phase 1, *idle check-in*: every vehicle checks in once at the same moment
  (the inventory learns them; nothing is offered: the new version is held).
- Phase 2, *campaign*: one campaign sends 1.1.0 to all of them (one 100% wave,
  optional download rate limit); every vehicle checks in, fetches the delta,
  rebuilds, verifies and reports INSTALLED, re-polling when not offered yet.
- **bare peer**: a gRPC server in its own process that only streams the same
  bytes from memory with the same Download RPC, chunk size and thread pool; the
  same N lite agents fetch and rebuild them with the same engine. Registry
  overhead is the ratio between the two.

    python bench/load_bench.py                  # 1,000 vehicles, the delta
    python bench/load_bench.py --agents 50      # quick
    python bench/load_bench.py --full           # the full model instead of the delta
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
MODEL = "squeezenet1.0"
WORKERS = 16  # create_server's default thread pool, for both servers
log = logging.getLogger("load_bench")


# -- server processes ---------------------------------------------------------------------
def serve_registry(data: Path, keys: Path, port_file: Path, workers: int) -> None:
    from server.campaigns.manager import CampaignManager
    from server.registry import Registry
    from server.service import create_server

    reg = Registry.open(data, keys)
    reg.rollouts = CampaignManager(reg.store, hold_new_versions=True)
    # Plain text, explicitly, on both servers: the comparison with the bare peer
    # measures registry logic, not TLS (security, issue 4, made TLS the default).
    server, port = create_server(reg, "127.0.0.1:0", max_workers=workers, insecure=True)
    _serve_until_term(server, port, port_file)


def serve_bare(blob: Path, port_file: Path, workers: int) -> None:
    """The peer: Download only, the same bytes from memory, nothing else."""
    from otawire.v1 import ota_pb2, ota_pb2_grpc
    from server.service import CHUNK_SIZE, MAX_MESSAGE_BYTES

    data = blob.read_bytes()

    class Bare(ota_pb2_grpc.VehicleServicer):
        def Download(self, request, context):
            end = len(data) if not request.max_bytes else min(len(data), request.offset + request.max_bytes)
            for off in range(request.offset, end, CHUNK_SIZE):
                yield ota_pb2.DownloadChunk(offset=off, data=data[off : min(end, off + CHUNK_SIZE)],
                                            total_length=len(data))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    ota_pb2_grpc.add_VehicleServicer_to_server(Bare(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    _serve_until_term(server, port, port_file)


def _serve_until_term(server: grpc.Server, port: int, port_file: Path) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    port_file.write_text(str(port))
    stop.wait()
    server.stop(None)


@dataclass
class Proc:
    """A server process and its CPU/memory as the kernel counts them."""

    popen: subprocess.Popen
    port: int

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mem_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(args: list[str], scratch: Path) -> Proc:
    port_file = scratch / f"port-{args[0]}"
    port_file.unlink(missing_ok=True)
    with open(scratch / f"{args[0]}.log", "wb") as logf:  # never our stdout: a stray server must not hold it
        popen = subprocess.Popen(["nice", sys.executable, __file__, *args, "--port-file", str(port_file)],
                                 stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    for _ in range(600):
        if port_file.exists() and port_file.read_text():
            return Proc(popen, int(port_file.read_text()))
        if popen.poll() is not None:
            raise RuntimeError(f"server {args[0]} exited with {popen.returncode}: see {scratch / args[0]}.log")
        time.sleep(0.05)
    popen.kill()
    raise RuntimeError(f"server {args[0]} did not start")


# -- lite agents ------------------------------------------------------------------------
@dataclass
class AgentResult:
    checkins_ms: list[float] = field(default_factory=list)
    download_s: float = 0.0
    bytes: int = 0
    encoding: str = ""
    fallback: str = ""  # why the encoding was not used, if it was not
    error: str = ""


def lite_update(address: str, vid: str, go: threading.Event, fx: "Fixture", a: argparse.Namespace,
                bare_offer=None) -> AgentResult:
    """One vehicle: check in until offered, then the agent engine's own steps: fetch the
    offered encoding (resumable, bounded), rebuild the model from it, verify it against
    the signed sha256 and length, and fetch the full model if the encoding fails; report.

    With ``bare_offer`` there is no registry: no check-in, no report, the same fetch.
    """
    from otawire.v1 import ota_pb2
    from vehicle_agent.download import HashVerifier, TargetFetcher
    from vehicle_agent.engine import StepFailed
    from vehicle_agent.transport import RegistryClient, TransportConfig, TransportError

    res = AgentResult()
    client = RegistryClient(address, TransportConfig(rpc_deadline_s=a.deadline, download_deadline_s=a.deadline),
                            insecure=True)
    work = fx.shm / vid
    work.mkdir()
    fetcher, rebuilder, verifier = TargetFetcher(client, work, vid), _SharedBaseRebuilder(fx.base_path, work), HashVerifier()
    go.wait()
    t_end = time.perf_counter() + a.deadline
    try:
        offer = bare_offer
        while offer is None and time.perf_counter() < t_end:
            t = time.perf_counter()
            resp = client.check(_check_request(vid, fx.base))
            res.checkins_ms.append((time.perf_counter() - t) * 1000)
            if resp.offers:
                offer = resp.offers[0]
                break
            time.sleep(a.poll * random.uniform(0.5, 1.5))
        if offer is None:
            res.error = "never offered"
            return res
        t = time.perf_counter()
        job = _job(fx.target, offer)
        try:
            built = rebuilder.rebuild(job, fetcher.fetch(job))
            verifier.verify(job, built)
        except StepFailed as e:  # the agent's fallback: the full model
            res.fallback = str(e)
            job = job.full()
            built = fetcher.fetch(job)
            verifier.verify(job, built)
        res.download_s = time.perf_counter() - t
        res.bytes, res.encoding = sum(fetcher.fetched.values()), job.encoding
        if bare_offer is None and not client.report(ota_pb2.InstallReport(
                vehicle_id=vid, hardware_id="ecu-load", name=MODEL, version=fx.new.version,
                status=ota_pb2.INSTALL_STATUS_INSTALLED, from_version=fx.base.version, encoding=res.encoding,
                bytes_downloaded=res.bytes, duration_s=res.download_s, active_version=fx.new.version)):
            res.error = "report failed"
    except (TransportError, StepFailed) as e:
        res.error = f"{type(e).__name__}: {e}"
    finally:
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    return res


def _job(target, offer):
    """The offer as the engine's Job: signed facts from the target, the encoding from the offer."""
    from vehicle_agent.journal import Job

    job = Job(name=MODEL, version=target.custom["version"], sha256=target.hashes["sha256"], length=target.length,
              target_path=target.path).full()
    if offer.encoding == "full":
        return job
    return dataclasses.replace(job, encoding=offer.encoding, download_path=offer.download_path,
                               download_length=offer.download_length, base_sha256=offer.base_sha256)


class _SharedBaseRebuilder:
    """The agent's CodecRebuilder, with every lite vehicle's installed model one shared file."""

    def __init__(self, base_path: Path, work: Path) -> None:
        from vehicle_agent.rebuild import CodecRebuilder

        self._inner = CodecRebuilder(None, work)  # type: ignore[arg-type]  # slots replaced below
        self._inner.installed = lambda name: base_path  # type: ignore[method-assign]

    def rebuild(self, job, encoded: Path) -> Path:
        return self._inner.rebuild(job, encoded)


def _check_request(vid: str, base):
    from otawire.v1 import ota_pb2

    return ota_pb2.CheckRequest(
        vehicle_id=vid, hardware_id="ecu-load", tags=["fleet=load"], wanted_models=[MODEL],
        installed=[ota_pb2.InstalledModel(name=MODEL, version=base.version, sha256=base.sha256)])


def _consistent(rec) -> str:
    from otawire.paths import consistent_target_path

    return consistent_target_path(rec.target_path, rec.sha256)


@dataclass
class Fixture:
    """What every lite agent shares: the signed target, the installed base model, scratch space."""

    base: object  # ModelRecord of the installed version
    new: object  # ModelRecord of the campaign's version
    base_path: Path
    target: object  # tuf TargetFile, verified once
    shm: Path


def checkin_once(address: str, vid: str, base, go: threading.Event, deadline_s: float) -> AgentResult:
    from vehicle_agent.transport import RegistryClient, TransportConfig, TransportError

    res = AgentResult()
    with RegistryClient(address, TransportConfig(rpc_deadline_s=deadline_s), insecure=True) as client:
        go.wait()
        t = time.perf_counter()
        try:
            resp = client.check(_check_request(vid, base))
            res.checkins_ms.append((time.perf_counter() - t) * 1000)
            if resp.offers:
                res.error = "offered before any campaign"
        except TransportError as e:
            res.error = str(e)
    return res


def run_fleet(n: int, vehicle: Callable[[str, threading.Event], AgentResult]) -> tuple[list[AgentResult], float]:
    """Start n vehicle threads, release them at once; (results, wall seconds until the last is done)."""
    go = threading.Event()
    with futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="car") as pool:
        futs = [pool.submit(vehicle, f"car-{i:04d}", go) for i in range(n)]
        time.sleep(0.5)  # let every thread open its channel and wait at the gate
        t0 = time.perf_counter()
        go.set()
        results = [f.result() for f in futs]
    return results, time.perf_counter() - t0


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# -- the benchmark ----------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--max-concurrent", type=int, default=0, help="campaign download rate limit (0 = off)")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between check-ins when not offered")
    ap.add_argument("--deadline", type=float, default=300.0, help="per-vehicle deadline for the update")
    ap.add_argument("--workers", type=int, default=WORKERS, help="server thread pool size (both servers)")
    ap.add_argument("--full", action="store_true", help="download the full model instead of the offered delta")
    ap.add_argument("--repeat", type=int, default=1, help="run both sides this many times; report medians")
    ap.add_argument("--json", type=Path, default=OUT / "load.json")
    ap.add_argument("--table", type=Path, help="print the table of an earlier --json file and exit")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.table:
        print_table(median_of(json.loads(a.table.read_text())["runs"]))
        return 0
    runs = []
    for i in range(a.repeat):
        runs.append(run_once(a))
        print(f"run {i + 1}/{a.repeat}: registry {runs[-1]['registry_wall_s']:.1f} s, "
              f"bare {runs[-1]['bare_wall_s']:.1f} s", file=sys.stderr)
    rows = median_of(runs)
    a.json.write_text(json.dumps({"median": rows, "runs": runs}, indent=2))
    print_table(rows)
    return 0 if rows["failed_updates"] == 0 and rows["bare_failed"] == 0 and rows["campaign_state"] == "completed" else 1


def median_of(runs: list[dict]) -> dict:
    """Per-figure medians over runs; failure counts are the worst run's, states must agree."""
    out = dict(runs[0], runs=len(runs))
    for k, v in runs[0].items():
        if k in ("failed_updates", "bare_failed", "fallbacks_to_full"):
            out[k] = max(r[k] for r in runs)
        elif k == "campaign_state":
            states = {r[k] for r in runs}
            out[k] = states.pop() if len(states) == 1 else "/".join(sorted(states))
        elif k == "errors":
            out[k] = sorted({e for r in runs for e in r[k]})[:10]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs)
    # Ratios of the medians, so that the table's columns and its ratio agree.
    out["throughput_ratio_registry_over_bare"] = out["registry_MBps"] / out["bare_MBps"]
    out["cpu_ratio_registry_over_bare"] = out["registry_cpu_s"] / out["bare_cpu_s"] if out["bare_cpu_s"] else float("nan")
    return out


def run_once(a: argparse.Namespace) -> dict:
    """One registry run and one bare-peer run on the same inputs; their figures."""
    from modelpack.lineage import FILES, build_lineage
    from otawire.v1 import ota_pb2
    from server.campaigns.service import CampaignClient
    from server.signing.keys import Keystore
    from server.registry import Registry
    from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec

    OUT.mkdir(parents=True, exist_ok=True)
    lineage = build_lineage()  # the real SqueezeNet v1.0 and its successor with a retrained head (cached)
    shm = Path(tempfile.mkdtemp(prefix="ota-load-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    with tempfile.TemporaryDirectory(prefix="ota-load-", dir=OUT) as tmp:
        scratch = Path(tmp)
        Keystore.init(scratch / "keys")
        reg = Registry.open(scratch / "registry", scratch / "keys")
        base = reg.publish_bytes(MODEL, "1.0.0", lineage["base"].read_bytes())
        new = reg.publish_bytes(MODEL, "1.1.0", lineage["head"].read_bytes())
        # What the registry will offer a vehicle on 1.0.0, and those bytes for the bare peer.
        reg.rollouts = None
        [offer] = reg.offers_for("probe", "ecu-load", {MODEL: (base.version, base.sha256)}, [MODEL])
        if a.full:
            offer = dataclasses.replace(offer, encoding="full", download_path=_consistent(new), base_sha256="",
                                        download_length=new.length)
        kind = "target" if offer.encoding == "full" else "encoding"
        wire = b"".join(d for _, d, _ in reg.read_chunks(kind, offer.download_path, 0, 0, 1 << 20))
        reg.store.close()
        blob = scratch / "wire.bin"
        blob.write_bytes(wire)
        base_path = shm / "base.onnx"
        base_path.write_bytes(lineage["base"].read_bytes())
        pb_offer = ota_pb2.UpdateOffer(**dataclasses.asdict(offer))

        registry = start(["serve-registry", "--data", str(scratch / "registry"), "--keys", str(scratch / "keys"),
                          "--workers", str(a.workers)], scratch)
        try:
            address = f"127.0.0.1:{registry.port}"
            fx = Fixture(base, new, base_path, _signed_target(address, scratch, new.target_path), shm)
            print(f"registry pid {registry.popen.pid} at {address}; {a.agents} lite agents; {FILES['base']} -> "
                  f"{FILES['head']}: {offer.encoding} {len(wire):,} B per vehicle (full {new.length:,} B)",
                  file=sys.stderr)
            cpu0 = registry.cpu_s()
            idle, idle_wall = run_fleet(a.agents, lambda vid, go: checkin_once(address, vid, base, go, a.deadline))
            cpu_idle = registry.cpu_s() - cpu0
            with CampaignClient(address, insecure=True) as admin:
                st = admin.create(CampaignSpec(
                    "load", MODEL, new.version, TargetSelection(tags=("fleet=load",)),
                    waves=(WaveSpec(100.0, 1.0, 0.0),), max_concurrent_downloads=a.max_concurrent, timeout_s=a.deadline))
            cpu1 = registry.cpu_s()
            upd, upd_wall = run_fleet(a.agents, lambda vid, go: lite_update(
                address, vid, go, fx, a, pb_offer if a.full else None))
            cpu_upd = registry.cpu_s() - cpu1
            reg_rss = registry.mem_kb("VmHWM")
            time.sleep(1.1)  # the campaign view is cached for 1 s
            with CampaignClient(address, insecure=True) as admin:
                final = admin.get(st.campaign_id)
        finally:
            registry.stop()
        print(f"registry: {upd_wall:.1f} s; now the bare peer", file=sys.stderr)
        bare = start(["serve-bare", "--blob", str(blob), "--workers", str(a.workers)], scratch)
        try:
            cpu2 = bare.cpu_s()
            peer, peer_wall = run_fleet(a.agents, lambda vid, go: lite_update(
                f"127.0.0.1:{bare.port}", vid, go, fx, a, pb_offer))
            cpu_peer = bare.cpu_s() - cpu2
            bare_rss = bare.mem_kb("VmHWM")
        finally:
            bare.stop()
    shutil.rmtree(shm, ignore_errors=True)

    return summarize(a, offer.encoding, len(wire), new.length, idle, idle_wall, cpu_idle, upd, upd_wall, cpu_upd,
                     reg_rss, peer, peer_wall, cpu_peer, bare_rss, final)


def _signed_target(address: str, scratch: Path, target_path: str):
    """Refresh TUF once (the real Updater over gRPC) and share the verified target with every lite agent."""
    from tuf.ngclient import Updater

    from vehicle_agent.fetcher import METADATA_URL, TARGET_URL, GrpcFetcher
    from vehicle_agent.transport import RegistryClient

    meta = scratch / "tuf"
    meta.mkdir()
    shutil.copyfile(scratch / "keys" / "root.json", meta / "root.json")
    with RegistryClient(address, insecure=True) as client:
        up = Updater(str(meta), METADATA_URL, str(scratch / "dl"), TARGET_URL, fetcher=GrpcFetcher(client),
                     bootstrap=None)
        up.refresh()
        target = up.get_targetinfo(target_path)
    assert target is not None, f"{target_path} is not signed"
    return target


def summarize(a, encoding, wire_bytes, length, idle, idle_wall, cpu_idle, upd, upd_wall, cpu_upd, reg_rss, peer, peer_wall, cpu_peer,
              bare_rss, final) -> dict:
    idle_ms = [x for r in idle for x in r.checkins_ms]
    upd_ms = [x for r in upd for x in r.checkins_ms]
    ok = [r for r in upd if not r.error]
    peer_ok = [r for r in peer if not r.error]
    reg_bytes = sum(r.bytes for r in ok)
    peer_bytes = sum(r.bytes for r in peer_ok)
    reg_mbps = reg_bytes / upd_wall / 1e6
    peer_mbps = peer_bytes / peer_wall / 1e6
    errors = sorted({r.error for r in upd + peer + idle if r.error})
    return {
        "agents": a.agents, "model_bytes": length, "bytes_per_download": wire_bytes, "encoding": encoding,
        "encodings_used": sorted({r.encoding for r in upd + peer if r.encoding}),
        "fallbacks_to_full": sum(1 for r in upd + peer if r.fallback), "workers": a.workers,
        "max_concurrent_downloads": a.max_concurrent, "cpus": os.cpu_count(),
        "idle_checkin_p50_ms": pct(idle_ms, 50), "idle_checkin_p99_ms": pct(idle_ms, 99),
        "idle_checkins_per_s": len(idle_ms) / idle_wall, "idle_registry_cpu_s": cpu_idle,
        "update_checkin_p50_ms": pct(upd_ms, 50), "update_checkin_p99_ms": pct(upd_ms, 99),
        "update_checkins": len(upd_ms),
        "registry_wall_s": upd_wall, "registry_MBps": reg_mbps,
        "registry_download_p50_s": statistics.median([r.download_s for r in ok]) if ok else float("nan"),
        "registry_cpu_s": cpu_upd, "registry_cpu_pct_of_one_core": 100 * cpu_upd / upd_wall,
        "registry_peak_rss_MB": reg_rss / 1024,
        "failed_updates": len(upd) - len(ok), "campaign_state": final.state,
        "campaign_installed": sum(w.installed for w in final.waves),
        "bare_wall_s": peer_wall, "bare_MBps": peer_mbps,
        "bare_download_p50_s": statistics.median([r.download_s for r in peer_ok]) if peer_ok else float("nan"),
        "bare_cpu_s": cpu_peer, "bare_cpu_pct_of_one_core": 100 * cpu_peer / peer_wall,
        "bare_peak_rss_MB": bare_rss / 1024, "bare_failed": len(peer) - len(peer_ok),
        "throughput_ratio_registry_over_bare": reg_mbps / peer_mbps if peer_mbps else float("nan"),
        "cpu_ratio_registry_over_bare": cpu_upd / cpu_peer if cpu_peer else float("nan"),
        "errors": errors[:10],
    }


def print_table(r: dict) -> None:
    print(f"\n### Load: {r['agents']} concurrent lite agents, one registry process, median of {r['runs']} run(s) "
          f"({r['cpus']} CPUs, {r['workers']} server threads; per vehicle {r['bytes_per_download']:,} B "
          f"{r['encoding']} for a {r['model_bytes']:,} B model)\n")
    print("| | registry (check-in + campaign + download + report) | bare gRPC peer (download only) | ratio |")
    print("|---|---|---|---|")
    print(f"| check-in p50 / p99, idle fleet (all at once) | {r['idle_checkin_p50_ms']:.0f} / "
          f"{r['idle_checkin_p99_ms']:.0f} ms ({r['idle_checkins_per_s']:.0f}/s) | – | |")
    print(f"| check-in p50 / p99, during the campaign | {r['update_checkin_p50_ms']:.0f} / "
          f"{r['update_checkin_p99_ms']:.0f} ms ({r['update_checkins']} check-ins) | – | |")
    print(f"| wall time, all {r['agents']} updated | {r['registry_wall_s']:.1f} s | {r['bare_wall_s']:.1f} s | "
          f"{r['registry_wall_s'] / r['bare_wall_s']:.2f}× |")
    print(f"| throughput (bytes on the wire) | {r['registry_MBps']:.1f} MB/s | {r['bare_MBps']:.1f} MB/s | "
          f"{r['throughput_ratio_registry_over_bare']:.2f} |")
    print(f"| updates per second | {r['agents'] / r['registry_wall_s']:.0f}/s | {r['agents'] / r['bare_wall_s']:.0f}/s | |")
    print(f"| one fetch + rebuild + verify, p50 | {r['registry_download_p50_s']:.2f} s | "
          f"{r['bare_download_p50_s']:.2f} s | |")
    print(f"| server CPU | {r['registry_cpu_s']:.1f} s ({r['registry_cpu_pct_of_one_core']:.0f}% of a core) | "
          f"{r['bare_cpu_s']:.1f} s ({r['bare_cpu_pct_of_one_core']:.0f}%) | {r['cpu_ratio_registry_over_bare']:.2f}× |")
    print(f"| server peak RSS | {r['registry_peak_rss_MB']:.0f} MB | {r['bare_peak_rss_MB']:.0f} MB | |")
    print(f"| failed updates | {r['failed_updates']} | {r['bare_failed']} | |")
    print(f"\ncampaign: {r['campaign_state']}, {r['campaign_installed']} installed; "
          f"rate limit {r['max_concurrent_downloads'] or 'off'}; encodings used {r['encodings_used']}, "
          f"fallbacks to the full file {r['fallbacks_to_full']}")
    for e in r["errors"]:
        print(f"error: {e}")


def _server_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["serve-registry", "serve-bare"])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--keys", type=Path)
    ap.add_argument("--blob", type=Path)
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--port-file", type=Path, required=True)
    s = ap.parse_args(argv)
    if s.role == "serve-registry":
        serve_registry(s.data, s.keys, s.port_file, s.workers)
    else:
        serve_bare(s.blob, s.port_file, s.workers)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("serve-"):
        _server_main(sys.argv[1:])
    else:
        sys.exit(main())
