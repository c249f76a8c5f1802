"""`ota registry serve`'s body: one registry process, or ``--workers N`` of them on one port.

Each worker is its own interpreter (so its own lock) started with ``spawn``
(never ``fork`` a process that has gRPC threads); gRPC sets SO_REUSEPORT, so
they all listen on the same port and the kernel spreads new connections over
them. They share nothing but the storage (SQLite's file locks, or PostgreSQL),
as replicas on separate machines do.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import threading
from pathlib import Path

import click

from otawire.tls import TlsFiles


@dataclasses.dataclass(frozen=True)
class ServeJob:
    """What one registry process serves (picklable: ``--workers`` hands it to new processes)."""

    data_dir: Path | None
    db: str
    keys_dir: Path
    listen: str
    metrics_listen: str
    files: TlsFiles | None
    insecure: bool
    ca: Path | None
    dashboard_listen: str = ""
    dashboard_token: str = ""
    dashboard_mtls: bool = False


def serve_workers(job: ServeJob, workers: int) -> None:
    """``workers`` processes on one port until SIGINT/SIGTERM, which each gets in turn."""
    import multiprocessing

    host, _, port = job.listen.rpartition(":")
    bare = host.strip("[]")
    if int(port) == 0:  # one port for all: pick it here
        with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET) as sock:
            sock.bind((bare or "0.0.0.0", 0))
            port = str(sock.getsockname()[1])
    mhost, _, mport = job.metrics_listen.rpartition(":")
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(workers):
        metrics = f"{mhost}:{int(mport) + i if int(mport) else 0}" if job.metrics_listen else ""
        # One dashboard, in worker 0: it reads the shared storage, so it shows every worker's
        # fleet; N of them would fight over its port (or each print a URL of its own).
        one = dataclasses.replace(
            job,
            listen=f"{host}:{port}",
            metrics_listen=metrics,
            dashboard_listen=job.dashboard_listen if i == 0 else "",
        )
        procs.append(ctx.Process(target=serve_one, args=(one,), name=f"registry-worker-{i}"))
    for p in procs:
        p.start()
    click.echo(
        f"registry: {workers} worker processes on {host}:{port}"
        + (" (the dashboard is worker 0's)" if job.dashboard_listen else ""),
        err=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if all(not p.is_alive() for p in procs):
            break
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: each finishes its in-flight calls
    for p in procs:
        p.join(15)
    failed = [p.name for p in procs if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise click.ClickException(f"{', '.join(failed)} exited with an error (see above)")


def serve_one(job: ServeJob) -> None:
    """One registry process until SIGINT/SIGTERM (5 s grace for in-flight calls)."""
    from otawire import tls
    from server.audit import AuditLog
    from server.registry import Registry
    from server.service import create_server
    from server.signing.keys import KeystoreError
    from server.storage import StorageError
    from server.storage.postgres_db import redact

    try:
        reg = Registry.open(
            job.data_dir,
            job.keys_dir,
            db=job.db or None,
            ca_pem=job.ca.read_bytes() if job.ca else None,
        )
    except (KeystoreError, StorageError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    metrics = None
    if job.metrics_listen:
        from server.campaigns.manager import CampaignManager
        from server.metrics import RegistryMetrics

        def codec_of(blob_sha256: str) -> str | None:
            rec = reg.store.encoding_by_blob(blob_sha256)
            return rec.codec if rec else None

        metrics = RegistryMetrics(codec_of=codec_of)
        if isinstance(reg.rollouts, CampaignManager):
            metrics.watch_campaigns(reg.rollouts)
        metrics.watch_blobs(reg)
        metrics.watch_fleet(reg.store.list_vehicles, served_metadata(reg))
        try:
            _, metrics_port = metrics.serve_http(job.metrics_listen)
        except OSError as e:
            raise click.ClickException(
                f"--metrics-listen {job.metrics_listen}: {e.strerror}; pick a free port"
            ) from None
        host = job.metrics_listen.rsplit(":", 1)[0]
        click.echo(f"metrics on http://{host}:{metrics_port}/metrics", err=True)
    # The audit log's INFO lines are the registry's record of who changed what: shown by default.
    logging.getLogger("server.audit").setLevel(logging.INFO)
    audit = AuditLog(reg.store)
    try:
        server, port = create_server(
            reg,
            job.listen,
            metrics=metrics,
            tls_files=job.files,
            insecure=job.insecure,
            audit=audit,
        )
    except (tls.TlsError, OSError) as e:
        raise click.ClickException(str(e)) from None
    host = job.listen.rsplit(":", 1)[0]
    where = f"database {redact(job.db)}" if job.db else f"data {job.data_dir}"
    click.echo(f"registry serving on {host}:{port} ({where})", err=True)
    dash = None
    if job.dashboard_listen:
        from server.dashboard.source import RegistrySource
        from server.dashboard.web import DashboardAuth, serve_dashboard

        auth = DashboardAuth(
            job.dashboard_token or DashboardAuth.with_fresh_token().token,
            job.files if job.dashboard_mtls else None,
        )
        try:
            dash = serve_dashboard(job.dashboard_listen, RegistrySource(reg, audit), auth)
        except OSError as e:
            server.stop(None)
            raise click.ClickException(
                f"--dashboard-listen {job.dashboard_listen}: {e.strerror}; pick a free port"
            ) from None
        click.echo(f"dashboard on {dash.url}", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    click.echo("stopping: finishing in-flight calls (5 s grace)", err=True)
    if dash is not None:
        dash.stop()
    server.stop(grace=5).wait()
    reg.store.close()


def served_metadata(reg):
    """``(repository, role) -> bytes`` of what the registry serves now, for the expiry gauges."""

    def read(repo: str, role: str) -> bytes | None:
        try:
            if repo == "director":
                return reg.get_metadata("director-root")
            return reg.tuf.get_file(f"{role}.json")
        except Exception:
            return None

    return read
