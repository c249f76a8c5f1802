"""Load benchmark: thousands of connected vehicles against the asyncio registry, and a bare gRPC peer.

What runs (all on this machine, loopback, plain text on every server so that
the comparison measures registry logic, not TLS):
- **registry**: the real registry (``Registry.open`` + ``create_server``:
  ``grpc.aio``, campaign manager, encodings) in processes of its own, SQLite by
  default (``--db postgresql://…`` for PostgreSQL), holding new versions for
  campaigns. Published: the real SqueezeNet v1.0 (1.0.0) and its successor
  with a retrained classifier head (1.1.0, ``modelpack.lineage``); a vehicle
  on 1.0.0 is offered the delta.
- **lite vehicles** (``bench/load_fleet.py``): coroutines in this one process,
  one ``grpc.aio`` channel (TCP connection) each; ``--slow-share`` of them read
  at ``--slow-kbps`` (a client-side link-rate cap).
- Phase 1, *idle check-in*: every vehicle checks in once at the same moment.
- Phase 2, *campaign*: one campaign (one 100 % wave, no download rate limit
  unless ``--max-concurrent``) sends 1.1.0 to all; every vehicle polls until
  offered, streams the delta, checks its sha256 and reports INSTALLED.
  Check-in latency is measured *during* the campaign, with the slow readers'
  streams open.
- **bare peer**: a ``grpc.aio`` server streaming the same bytes from memory
  with the same Download RPC and chunk size; the same vehicles (same slow
  share) fetch them. Registry overhead is the ratio between the two.
- **workers** (``--workers-list``): check-ins/s of a closed-loop generator in
  this process against 1, 2 and 4 registry processes sharing one port
  (SO_REUSEPORT, as ``ota registry serve --workers N``), on SQLite and, with
  ``--pg-dsn``, PostgreSQL. The generator's own CPU share is printed: on two
  cores it competes with the registry it measures.

    python bench/load_bench.py                        # 1,000 and 10,000 vehicles + workers
    python bench/load_bench.py --agents 200 --workers-list ''   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load_fleet as lf
from bench.checkin_profile import pg_schema

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
CLK = os.sysconf("SC_CLK_TCK")
log = logging.getLogger("load_bench")


# -- server processes ---------------------------------------------------------------------
def serve_registry(
    data: Path, keys: Path, db: str, listen: str, port_file: Path, threads: int, chunk: int
) -> None:
    from server.campaigns.manager import CampaignManager
    from server.registry import Registry
    from server.service import create_server

    reg = Registry.open(data, keys, db=db or None)
    reg.rollouts = CampaignManager(reg.store)
    server, port = create_server(reg, listen, max_workers=threads, insecure=True, chunk_size=chunk)
    _until_term(port, port_file)
    server.stop(None)


def serve_bare(blob: Path, port_file: Path, chunk: int) -> None:
    async def main() -> None:
        server, start = lf.serve_bare(blob.read_bytes(), chunk)
        port = await start()
        await asyncio.get_running_loop().run_in_executor(None, _until_term, port, port_file)
        await server.stop(None)

    asyncio.run(main())


def _until_term(port: int, port_file: Path) -> None:
    stop = threading.Event()
    signal.signal(
        signal.SIGTERM, lambda *_: stop.set()
    ) if threading.current_thread() is threading.main_thread() else None
    port_file.write_text(str(port))
    while not stop.is_set() and port_file.exists():
        stop.wait(0.2)


@dataclass
class Proc:
    """Server processes and their CPU/memory as the kernel counts them."""

    popens: list[subprocess.Popen]
    port: int
    port_files: list[Path]

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.popens:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        return total

    def peak_rss_mb(self) -> float:
        """The largest peak RSS among the processes."""
        best = 0
        for p in self.popens:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
        return best / 1024

    def stop(self) -> None:
        for f in self.port_files:
            f.unlink(missing_ok=True)  # the bare peer's loop thread watches its port file
        for p in self.popens:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.popens:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(role: str, args: list[str], scratch: Path, n: int = 1) -> Proc:
    """n processes of ``role`` (more than one share a fixed port through SO_REUSEPORT)."""
    listen = f"127.0.0.1:{free_port() if n > 1 else 0}"
    popens, files = [], []
    for i in range(n):
        pf = scratch / f"port-{role}-{i}"
        pf.unlink(missing_ok=True)
        with open(scratch / f"{role}-{i}.log", "wb") as logf:
            popens.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        role,
                        *args,
                        "--listen",
                        listen,
                        "--port-file",
                        str(pf),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                )
            )
        files.append(pf)
    ports = []
    for p, pf in zip(popens, files, strict=False):
        for _ in range(1200):
            if pf.exists() and pf.read_text():
                ports.append(int(pf.read_text()))
                break
            if p.poll() is not None:
                raise RuntimeError(f"{role} exited with {p.returncode}: see {scratch}/{role}-*.log")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{role} did not start")
    assert len(set(ports)) == 1, ports
    return Proc(popens, ports[0], files)


# -- set-up ---------------------------------------------------------------------------------
def publish(scratch: Path, db: str) -> tuple[lf.Want, bytes]:
    """Publish the lineage; what a vehicle on 1.0.0 is offered, and those bytes."""
    from modelpack.lineage import build_lineage
    from otawire.v1 import ota_pb2
    from server.registry import Registry
    from server.signing.keys import Keystore

    lineage = build_lineage()
    scratch.mkdir(parents=True, exist_ok=True)
    Keystore.init(scratch / "keys")
    reg = Registry.open(scratch / "registry", scratch / "keys", db=db or None)
    try:
        base = reg.publish_bytes(lf.MODEL, "1.0.0", lineage["base"].read_bytes())
        new = reg.publish_bytes(lf.MODEL, "1.1.0", lineage["head"].read_bytes())
        reg.release(lf.MODEL, "1.1.0", "vehicle:probe")  # the fleet gets it from the campaign only
        reg.rollouts = None
        [o] = reg.offers_for(
            "probe", lf.HARDWARE, {lf.MODEL: (base.version, base.sha256)}, [lf.MODEL]
        )
        kind = "target" if o.encoding == "full" else "encoding"
        wire = b"".join(d for _, d, _ in reg.read_chunks(kind, o.download_path, 0, 0, 1 << 20))
    finally:
        reg.store.close()
    import hashlib

    want = lf.Want(
        ota_pb2.FILE_KIND_TARGET if kind == "target" else ota_pb2.FILE_KIND_ENCODING,
        o.download_path,
        len(wire),
        hashlib.sha256(wire).hexdigest(),
        base.version,
        base.sha256,
        new.version,
    )
    return want, wire


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


# -- phases ----------------------------------------------------------------------------------
def run_fleet_size(
    a: argparse.Namespace, n: int, scratch: Path, want: lf.Want, wire: bytes, db: str
) -> dict:
    from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec
    from server.campaigns.service import CampaignClient

    slow = set(range(0, n, max(1, round(1 / a.slow_share)))) if a.slow_share else set()
    rate = lambda vid: a.slow_kbps * 1000 if int(vid.split("-")[1]) in slow else 0.0  # noqa: E731
    reg_args = [
        "--data",
        str(scratch / "registry"),
        "--keys",
        str(scratch / "keys"),
        "--db",
        db,
        "--threads",
        str(a.threads),
        "--chunk-kb",
        str(a.chunk_kb),
    ]
    registry = start("serve-registry", reg_args, scratch)
    address = f"127.0.0.1:{registry.port}"
    gen0 = time.process_time()
    try:
        cpu0 = registry.cpu_s()
        idle, idle_wall = asyncio.run(
            lf.fleet(n, lambda vid, go: lf.checkin(address, vid, want, go, a.deadline))
        )
        cpu_idle = registry.cpu_s() - cpu0
        with CampaignClient(address, insecure=True, timeout_s=120) as admin:
            st = admin.create(
                CampaignSpec(
                    f"load-{n}",
                    lf.MODEL,
                    want.new_version,
                    TargetSelection(tags=(lf.TAG,)),
                    waves=(WaveSpec(100.0, 1.0, 0.0),),
                    max_concurrent_downloads=a.max_concurrent,
                    timeout_s=a.deadline,
                )
            )
        cpu1 = registry.cpu_s()
        t_gen = time.process_time()
        upd, upd_wall = asyncio.run(
            lf.fleet(
                n,
                lambda vid, go: lf.update(
                    address, vid, want, go, rate(vid), a.poll, a.deadline, registry=True
                ),
            )
        )
        gen_upd = time.process_time() - t_gen
        cpu_upd = registry.cpu_s() - cpu1
        reg_rss = registry.peak_rss_mb()
        time.sleep(1.1)  # the campaign view is cached for 1 s
        with CampaignClient(address, insecure=True, timeout_s=120) as admin:
            final = admin.get(st.campaign_id)
    finally:
        registry.stop()
    blob = scratch / "wire.bin"
    blob.write_bytes(wire)
    bare = start("serve-bare", ["--blob", str(blob), "--chunk-kb", str(a.chunk_kb)], scratch)
    try:
        cpu2 = bare.cpu_s()
        peer, peer_wall = asyncio.run(
            lf.fleet(
                n,
                lambda vid, go: lf.update(
                    f"127.0.0.1:{bare.port}",
                    vid,
                    want,
                    go,
                    rate(vid),
                    a.poll,
                    a.deadline,
                    registry=False,
                ),
            )
        )
        cpu_peer = bare.cpu_s() - cpu2
        bare_rss = bare.peak_rss_mb()
    finally:
        bare.stop()
    idle_ms = [x for r in idle for x in r.checkins_ms]
    upd_ms = [x for r in upd for x in r.checkins_ms]
    ok = [r for r in upd if not r.error]
    peer_ok = [r for r in peer if not r.error]
    return {
        "agents": n,
        "slow": len(slow),
        "slow_kbps": a.slow_kbps,
        "bytes_per_download": want.length,
        "chunk_kb": a.chunk_kb,
        "threads": a.threads,
        "max_concurrent_downloads": a.max_concurrent,
        "engine": "postgresql" if db else "sqlite",
        "idle_checkin_p50_ms": pct(idle_ms, 50),
        "idle_checkin_p99_ms": pct(idle_ms, 99),
        "idle_checkins_per_s": len(idle_ms) / idle_wall,
        "idle_failed": sum(1 for r in idle if r.error),
        "idle_registry_cpu_s": cpu_idle,
        "update_checkin_p50_ms": pct(upd_ms, 50),
        "update_checkin_p99_ms": pct(upd_ms, 99),
        "update_checkins": len(upd_ms),
        "registry_wall_s": upd_wall,
        "bare_wall_s": peer_wall,
        "wall_ratio": upd_wall / peer_wall,
        "slow_download_p50_s": statistics.median(
            [r.download_s for r in ok if r.slow] or [float("nan")]
        ),
        "fast_download_p50_s": statistics.median(
            [r.download_s for r in ok if not r.slow] or [float("nan")]
        ),
        "registry_cpu_s": cpu_upd,
        "registry_cpu_s_per_update": cpu_upd / max(1, len(ok)),
        "bare_cpu_s": cpu_peer,
        "bare_cpu_s_per_update": cpu_peer / max(1, len(peer_ok)),
        "registry_peak_rss_MB": reg_rss,
        "bare_peak_rss_MB": bare_rss,
        "generator_cpu_s_campaign": gen_upd,
        "generator_share_of_cores_campaign": gen_upd / (upd_wall * (os.cpu_count() or 1)),
        "generator_peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "failed_updates": len(upd) - len(ok),
        "bare_failed": len(peer) - len(peer_ok),
        "campaign_state": final.state,
        "campaign_installed": sum(w.installed for w in final.waves),
        "errors": sorted({r.error for r in upd + peer + idle if r.error})[:10],
        "generator_cpu_s_total": time.process_time() - gen0,
    }


def run_workers(a: argparse.Namespace, scratch: Path, want: lf.Want, db: str) -> list[dict]:
    rows = []
    reg_args = [
        "--data",
        str(scratch / "registry"),
        "--keys",
        str(scratch / "keys"),
        "--db",
        db,
        "--threads",
        str(a.threads),
        "--chunk-kb",
        str(a.chunk_kb),
    ]
    for w in [int(x) for x in a.workers_list.split(",") if x]:
        try:
            registry = start("serve-registry", reg_args, scratch, n=w)
        except RuntimeError as e:  # e.g. PostgreSQL out of connections: say so, measure the rest
            log_tail = "".join(
                p.read_text()[-300:] for p in sorted(scratch.glob("serve-registry-*.log"))
            )
            print(
                f"  {'postgresql' if db else 'sqlite'} x{w}: did not start: {e}\n{log_tail}",
                file=sys.stderr,
            )
            continue
        try:
            cpu0 = registry.cpu_s()
            r = asyncio.run(
                lf.hammer(f"127.0.0.1:{registry.port}", want, a.seconds, a.concurrency, a.channels)
            )
            r.update(
                workers=w,
                engine="postgresql" if db else "sqlite",
                registry_cpu_s=registry.cpu_s() - cpu0,
            )
            r["generator_share_of_cores"] = r["generator_cpu_s"] / (
                r["wall_s"] * (os.cpu_count() or 1)
            )
            r["registry_share_of_cores"] = r["registry_cpu_s"] / (
                r["wall_s"] * (os.cpu_count() or 1)
            )
        finally:
            registry.stop()
        print(f"  {r['engine']} x{w}: {r['checkins_per_s']:.0f} check-ins/s", file=sys.stderr)
        rows.append(r)
    return rows


# -- output -----------------------------------------------------------------------------------
def print_fleet(r: dict) -> None:
    print(
        f"\n### Load: {r['agents']:,} lite vehicles ({r['slow']:,} reading at {r['slow_kbps']:.0f} kbit/s), "
        f"one asyncio registry process ({r['engine']}), {os.cpu_count()} CPUs; per vehicle "
        f"{r['bytes_per_download']:,} B, {r['chunk_kb']} KiB chunks, campaign rate limit "
        f"{r['max_concurrent_downloads'] or 'off'}\n"
    )
    print("| | registry | bare gRPC peer (aio, from memory) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| check-in p50 / p99, idle fleet (all at once) | {r['idle_checkin_p50_ms']:.0f} / "
        f"{r['idle_checkin_p99_ms']:.0f} ms ({r['idle_checkins_per_s']:.0f}/s) | – | |"
    )
    print(
        f"| check-in p50 / p99, during the campaign | {r['update_checkin_p50_ms']:.0f} / "
        f"{r['update_checkin_p99_ms']:.0f} ms ({r['update_checkins']:,} check-ins) | – | |"
    )
    print(
        f"| wall time, all {r['agents']:,} updated | {r['registry_wall_s']:.1f} s | {r['bare_wall_s']:.1f} s | "
        f"{r['wall_ratio']:.2f}× |"
    )
    print(
        f"| download p50, fast / slow vehicles | {r['fast_download_p50_s']:.2f} / {r['slow_download_p50_s']:.1f} s"
        " | | |"
    )
    print(
        f"| server CPU per update | {1000 * r['registry_cpu_s_per_update']:.1f} ms | "
        f"{1000 * r['bare_cpu_s_per_update']:.1f} ms | "
        f"{r['registry_cpu_s_per_update'] / r['bare_cpu_s_per_update']:.1f}× |"
    )
    print(
        f"| server peak RSS | {r['registry_peak_rss_MB']:.0f} MB | {r['bare_peak_rss_MB']:.0f} MB | |"
    )
    print(f"| failed updates | {r['failed_updates']} | {r['bare_failed']} | |")
    print(
        f"\ncampaign {r['campaign_state']}, {r['campaign_installed']:,} installed; the load generator used "
        f"{100 * r['generator_share_of_cores_campaign']:.0f}% of the cores during the campaign "
        f"(peak RSS {r['generator_peak_rss_MB']:.0f} MB)"
    )
    for e in r["errors"]:
        print(f"error: {e}")


def print_workers(rows: list[dict]) -> None:
    if not rows:
        return
    print(
        f"\n### Check-ins/s by registry processes (SO_REUSEPORT), closed loop, {os.cpu_count()} CPUs\n"
    )
    print(
        "| engine | workers | check-ins/s | vs 1 worker | p50 / p99 | registry CPU share | "
        "generator CPU share | failed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    one = {r["engine"]: r["checkins_per_s"] for r in rows if r["workers"] == 1}
    for r in rows:
        base = one.get(r["engine"])
        print(
            f"| {r['engine']} | {r['workers']} | {r['checkins_per_s']:.0f} | "
            f"{r['checkins_per_s'] / base:.2f}× | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms | "
            f"{100 * r['registry_share_of_cores']:.0f}% | {100 * r['generator_share_of_cores']:.0f}% | "
            f"{r['failed']} |"
            if base
            else ""
        )


# -- main ---------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--agents", default="1000,10000", help="fleet sizes, comma-separated")
    ap.add_argument(
        "--slow-share", type=float, default=0.1, help="share of vehicles with a link-rate cap"
    )
    ap.add_argument("--slow-kbps", type=float, default=256.0, help="their cap, kbit/s")
    ap.add_argument(
        "--max-concurrent", type=int, default=0, help="campaign download rate limit (0 = off)"
    )
    ap.add_argument(
        "--poll", type=float, default=1.0, help="seconds between check-ins when not offered"
    )
    ap.add_argument(
        "--deadline", type=float, default=600.0, help="per-vehicle deadline for the update"
    )
    ap.add_argument("--threads", type=int, default=16, help="registry threads for blocking work")
    ap.add_argument("--chunk-kb", type=int, default=256, help="Download chunk size (both servers)")
    ap.add_argument("--db", default="", help="run the fleet phases on PostgreSQL (a fresh schema)")
    ap.add_argument(
        "--workers-list", default="1,2,4", help="registry processes for the check-ins/s phase"
    )
    ap.add_argument(
        "--pg-dsn",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL for the workers phase ('' to skip it)",
    )
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="length of each check-ins/s measurement"
    )
    ap.add_argument("--concurrency", type=int, default=64, help="check-ins in flight in that phase")
    ap.add_argument("--channels", type=int, default=32, help="connections they share")
    ap.add_argument("--json", type=Path, default=OUT / "load.json")
    ap.add_argument(
        "--table", type=Path, help="print the tables of an earlier --json file and exit"
    )
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.table:
        out = json.loads(a.table.read_text())
    else:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2
        )
        OUT.mkdir(parents=True, exist_ok=True)
        out = {"fleets": [], "workers": []}
        drops = []
        try:
            with tempfile.TemporaryDirectory(prefix="ota-load-", dir=OUT) as tmp:
                scratch = Path(tmp)

                def fresh(where: Path, dsn: str) -> tuple[str, lf.Want, bytes]:
                    """A new data directory (and schema): its inventory and campaigns start empty."""
                    db = ""
                    if dsn:
                        db, drop = pg_schema(dsn)
                        drops.append(drop)
                    return (db, *publish(where, db))

                want = None
                for n in [int(x) for x in a.agents.split(",") if x]:
                    db, want, wire = fresh(scratch / f"fleet-{n}", a.db)
                    print(f"{n:,} vehicles: {want.path} {want.length:,} B each", file=sys.stderr)
                    out["fleets"].append(
                        run_fleet_size(a, n, scratch / f"fleet-{n}", want, wire, db)
                    )
                    print_fleet(out["fleets"][-1])
                if a.workers_list:
                    for engine, dsn in (("sqlite", ""), ("postgresql", a.pg_dsn)):
                        if engine == "postgresql" and not dsn:
                            continue
                        db, want, _ = fresh(scratch / f"workers-{engine}", dsn)
                        out["workers"] += run_workers(a, scratch / f"workers-{engine}", want, db)
        finally:
            for d in drops:
                d()
        a.json.write_text(json.dumps(out, indent=2))
    for r in out["fleets"]:
        print_fleet(r)
    print_workers(out["workers"])
    bad = any(
        r["failed_updates"] or r["bare_failed"] or r["campaign_state"] != "completed"
        for r in out["fleets"]
    )
    return 1 if bad else 0


def _server_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["serve-registry", "serve-bare"])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--keys", type=Path)
    ap.add_argument("--db", default="")
    ap.add_argument("--blob", type=Path)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--chunk-kb", type=int, default=256)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file", type=Path, required=True)
    s = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if s.role == "serve-registry":
        serve_registry(s.data, s.keys, s.db, s.listen, s.port_file, s.threads, s.chunk_kb * 1024)
    else:
        serve_bare(s.blob, s.port_file, s.chunk_kb * 1024)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("serve-"):
        _server_main(sys.argv[1:])
    else:
        sys.exit(main())
