"""Check-ins per second and p99 latency: one registry replica vs three, on PostgreSQL.

Peers, on the same published model, the same load and in the same run:
- ``sqlite x1``: the embedded default (one ``ota registry serve --data``);
- ``postgresql x1``: one replica on PostgreSQL;
- ``postgresql x3``: three replicas sharing the database, the load spread by
  gRPC ``round_robin`` over their three addresses (as agents do).

A check-in is one ``CheckForUpdate`` call from a vehicle that reports what it
runs: half the simulated vehicles run the previous version and are offered a
delta, half are up to date. The load comes from separate client processes,
each running closed-loop threads. CPU seconds of the replicas, of the load
generator and of PostgreSQL are read from /proc, so the table says where the
machine's cores went. The configurations run side by side and their rounds
alternate, so a shared machine's changing load hits each alike. Every figure
is measured in this run; medians of ``--repeat`` rounds.

    nice .venv/bin/python bench/replicas_bench.py [--seconds 5] [--repeat 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from otawire.v1 import ota_pb2, ota_pb2_grpc
from testkit.cluster import Replica, start_replicas, stop_all
from testkit.pg import DEFAULT_DSN, with_schema
from vehicle_agent.transport import SERVICE_CONFIG, channel_target

CLK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process still there."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / CLK
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return out


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two samples by the processes present in both."""
    return sum(after[p] - before[p] for p in before.keys() & after.keys())


def _postgres_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in ("postgres", "postmaster"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _client(
    address: str, threads: int, seconds: float, requests: list, queue: mp.Queue, go
) -> None:
    """One load process: ``threads`` closed loops of check-ins; sends back latencies (s)."""
    channel = grpc.insecure_channel(
        channel_target(address), options=[("grpc.service_config", SERVICE_CONFIG)]
    )
    stub = ota_pb2_grpc.VehicleStub(channel)
    grpc.channel_ready_future(channel).result(timeout=30)
    queue.put("ready")
    go.wait()
    stop_at = time.perf_counter() + seconds
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop(k: int) -> None:
        mine, i = [], k
        while (t0 := time.perf_counter()) < stop_at:
            try:
                stub.CheckForUpdate(requests[i % len(requests)], timeout=10)
                mine.append(time.perf_counter() - t0)
            except grpc.RpcError:
                errors[0] += 1
            i += threads
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    channel.close()
    queue.put((lat, errors[0]))


@dataclass
class Round:
    checkins_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_replicas: float  # CPU seconds per wall second (1.0 = one core busy)
    cpu_clients: float
    cpu_postgres: float


def run_load(
    replicas: list[Replica], requests: list, seconds: float, procs: int, threads: int
) -> Round:
    address = ",".join(r.address for r in replicas)
    ctx = mp.get_context("spawn")  # no fork after grpc is imported
    queue, go = ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(target=_client, args=(address, threads, seconds, requests, queue, go))
        for _ in range(procs)
    ]
    server_pids, pg_pids = [r.proc.pid for r in replicas], _postgres_pids()
    for w in workers:
        w.start()
    for _ in workers:
        assert queue.get(timeout=60) == "ready"
    go.set()
    client_pids = [w.pid for w in workers if w.pid is not None]  # all started: every pid is set
    groups = (server_pids, client_pids, pg_pids)
    cpu0 = [_cpu_seconds(g) for g in groups]
    t0 = time.perf_counter()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    wall = time.perf_counter() - t0
    busy = [_delta(before, _cpu_seconds(g)) / wall for before, g in zip(cpu0, groups, strict=False)]
    for w in workers:
        w.join()
    lat = sorted(x for r in results for x in r[0])
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return Round(
        checkins_per_s=len(lat) / seconds,
        p50_ms=q[49] * 1000,
        p99_ms=q[98] * 1000,
        errors=sum(r[1] for r in results),
        cpu_replicas=busy[0],
        cpu_clients=busy[1],
        cpu_postgres=busy[2],
    )


def _publish(registry, model: bytes, successor: bytes) -> list:
    registry.publish_bytes("squeezenet1.0", "1.0.0", model)
    registry.publish_bytes("squeezenet1.0", "1.0.1", successor)
    registry.release("squeezenet1.0", "1.0.1")
    old, new = hashlib.sha256(model).hexdigest(), hashlib.sha256(successor).hexdigest()
    reqs = []
    for i in range(256):
        installed = [
            ota_pb2.InstalledModel(
                name="squeezenet1.0",
                version="1.0.0" if i % 2 else "1.0.1",
                sha256=old if i % 2 else new,
            )
        ]
        reqs.append(
            ota_pb2.CheckForUpdateRequest(
                vehicle_id=f"bench-{i:04d}", hardware_id="generic-x86_64", installed=installed
            )
        )
    return reqs


def _in_process_ms(registry, requests: list, rounds: int) -> float:
    """Median ms of ``Registry.offers_for`` per check-in (after one warm-up pass)."""

    def one_pass() -> float:
        t0 = time.perf_counter()
        for r in requests:
            registry.offers_for(
                r.vehicle_id, r.hardware_id, {m.name: (m.version, m.sha256) for m in r.installed}
            )
        return (time.perf_counter() - t0) / len(requests) * 1000

    one_pass()
    return statistics.median(one_pass() for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="load per round (default 5)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="rounds per configuration; medians are reported"
    )
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--threads", type=int, default=8, help="closed-loop threads per load process")
    ap.add_argument("--dsn", default=os.environ.get("OTA_TEST_PG_DSN", DEFAULT_DSN))
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the replicas stop and the schema is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import psycopg

    from modelpack import zoo
    from otawire import tls
    from server.registry import Registry
    from server.signing.keys import Keystore
    from testkit.helpers import with_provenance

    model = zoo.build("squeezenet1.0")
    successor = with_provenance(model, "bench successor")
    work = Path(tempfile.mkdtemp(prefix="ota-replicas-bench-"))
    Keystore.init(work / "keys")
    tls.make_ca(work / "pki")
    # Plain text on every configuration alike (as the load bench): this measures
    # storage and replicas, not TLS; manifests are still checked against the CA.
    plain = ["--insecure", "--ca", str(work / "pki" / tls.CA_CERT)]
    schema = f"ota_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(args.dsn, autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as e:
        sys.exit(f"no PostgreSQL at {args.dsn} (--dsn or OTA_TEST_PG_DSN): {str(e).strip()}")
    dsn = with_schema(args.dsn, schema)
    rows: dict[str, list[Round]] = {}
    in_process: dict[str, float] = {}
    try:
        pg = Registry.open(work / "spool", work / "keys", db=dsn)
        requests = _publish(pg, model, successor)
        sq = Registry.open(work / "sqlite", work / "keys")
        _publish(sq, model, successor)
        # The decision alone, in this process, without gRPC: what one check-in costs each engine.
        in_process = {
            "sqlite": _in_process_ms(sq, requests, args.repeat),
            "postgresql": _in_process_ms(pg, requests, args.repeat),
        }
        pg.store.close()
        sq.store.close()
        configs = {
            "sqlite x1": lambda: start_replicas(
                1, "", work / "keys", extra_args=[*plain, "--data", str(work / "sqlite")]
            ),
            "postgresql x1": lambda: start_replicas(1, dsn, work / "keys", extra_args=plain),
            "postgresql x3": lambda: start_replicas(3, dsn, work / "keys", extra_args=plain),
        }
        # All configurations run side by side (idle ones cost nothing) and their
        # rounds alternate, so a change in the shared machine's load hits each alike.
        running: dict[str, list[Replica]] = {}
        try:
            for name, start in configs.items():
                running[name] = start()
                run_load(
                    running[name], requests, 1.0, args.procs, args.threads
                )  # warm-up: connections, caches
                rows[name] = []
            for _ in range(args.repeat):
                for name, replicas in running.items():
                    rows[name].append(
                        run_load(replicas, requests, args.seconds, args.procs, args.threads)
                    )
                    print(f"{name}: {rows[name][-1]}", file=sys.stderr)
        finally:
            for replicas in running.values():
                stop_all(replicas)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    text = report(rows, args, in_process)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


def report(
    rows: dict[str, list[Round]], args: argparse.Namespace, in_process: dict[str, float]
) -> str:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in rows[name])

    base = med("postgresql x1", "checkins_per_s")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Check-ins (CheckForUpdate) on {os.cpu_count()} cores (load average at the end {load}: the machine is "
        f"shared), {args.procs} load processes x {args.threads} threads, {args.seconds:g} s x {args.repeat} rounds, "
        "medians. CPU = cores busy (CPU s per wall s).",
        "",
        "| registry | check-ins/s | vs postgresql x1 | p50 ms | p99 ms | errors | CPU replicas | CPU load gen | CPU postgres |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in rows:
        lines.append(
            f"| {name} | {med(name, 'checkins_per_s'):,.0f} | {med(name, 'checkins_per_s') / base:.2f}x "
            f"| {med(name, 'p50_ms'):.1f} | {med(name, 'p99_ms'):.1f} | {sum(r.errors for r in rows[name])} "
            f"| {med(name, 'cpu_replicas'):.2f} | {med(name, 'cpu_clients'):.2f} | {med(name, 'cpu_postgres'):.2f} |"
        )
    lines += [
        "",
        "One check-in's decision in-process, without gRPC (Registry.offers_for, median ms): "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in in_process.items())
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
