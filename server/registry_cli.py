"""``ota registry serve``: the registry process (gRPC, and optionally metrics and the dashboard)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from otawire.cli_tls import tls_files, tls_options
from server.signing.cli import DEFAULT_REGISTRY


@click.group()
def registry() -> None:
    """Run the cloud registry."""


@registry.command("serve")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    envvar="OTA_DATA",
    help="Data directory (SQLite + blobs); with --db only a spool for uploads. Env: OTA_DATA.",
)
@click.option(
    "--db",
    default="",
    envvar="OTA_DB",
    metavar="postgresql://…",
    help="Keep everything in this PostgreSQL database instead, shared by any number of "
    "replicas (needs the 'pg' extra). Env: OTA_DB.",
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(path_type=Path),
    required=True,
    envvar="OTA_KEYS",
    help="Keystore made by `ota keys init`. Env: OTA_KEYS.",
)
@click.option(
    "--listen",
    default=DEFAULT_REGISTRY,
    show_default=True,
    envvar="OTA_LISTEN",
    help="host:port to listen on. Env: OTA_LISTEN.",
)
@click.option(
    "--metrics-listen",
    default="",
    envvar="OTA_METRICS_LISTEN",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free one). "
    "Env: OTA_METRICS_LISTEN.",
)
@click.option(
    "--dashboard-listen",
    default="",
    envvar="OTA_DASHBOARD_LISTEN",
    metavar="HOST:PORT",
    help="Serve the read-only web dashboard here (off by default; http://, or https:// with "
    "--dashboard-mtls). It needs the token it prints (or --dashboard-token). Env: OTA_DASHBOARD_LISTEN.",
)
@click.option(
    "--dashboard-mtls",
    is_flag=True,
    envvar="OTA_DASHBOARD_MTLS",
    help="Serve the dashboard over HTTPS with the registry's certificate and also accept operator "
    "(publisher) client certificates from the fleet CA. Env: OTA_DASHBOARD_MTLS.",
)
@click.option(
    "--dashboard-token",
    default="",
    envvar="OTA_DASHBOARD_TOKEN",
    help="The dashboard's bearer token (default: a fresh random one, printed at start). "
    "Env: OTA_DASHBOARD_TOKEN.",
)
@tls_options("registry")
def serve(
    data_dir: Path | None,
    db: str,
    keys_dir: Path,
    listen: str,
    metrics_listen: str,
    dashboard_listen: str,
    dashboard_token: str,
    dashboard_mtls: bool,
    tls_ca,
    tls_cert,
    tls_key,
    insecure: bool,
) -> None:
    """Serve the Publisher and Vehicle gRPC services until SIGINT/SIGTERM.

    Mutual TLS by default. KEYS needs only the online keys (`ota keys online`).
    With --insecure, --ca alone still lets the director verify vehicle manifests.
    """
    from otawire import tls
    from server.audit import AuditLog
    from server.registry import Registry
    from server.service import create_server
    from server.signing.keys import KeystoreError
    from server.storage import StorageError

    if not db and data_dir is None:
        raise click.UsageError(
            "give --data DIR (embedded SQLite) or --db postgresql://… (shared database)"
        )
    for option, value in (
        ("--listen", listen),
        ("--metrics-listen", metrics_listen),
        ("--dashboard-listen", dashboard_listen),
    ):
        if value:
            _check_listen(option, value)
    # The audit log's INFO lines are the registry's record of who changed what: shown by default.
    logging.getLogger("server.audit").setLevel(logging.INFO)
    files = tls_files(tls_ca, tls_cert, tls_key, insecure, required=not (insecure and tls_ca))
    if dashboard_mtls and files is None:
        raise click.UsageError("--dashboard-mtls needs the registry's --ca/--cert/--key")
    try:
        reg = Registry.open(
            data_dir, keys_dir, db=db or None, ca_pem=tls_ca.read_bytes() if tls_ca else None
        )
    except (KeystoreError, StorageError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    metrics = None
    if metrics_listen:
        from server.campaigns.manager import CampaignManager
        from server.metrics import RegistryMetrics

        def codec_of(blob_sha256: str) -> str | None:
            rec = reg.store.encoding_by_blob(blob_sha256)
            return rec.codec if rec else None

        metrics = RegistryMetrics(codec_of=codec_of)
        if isinstance(reg.rollouts, CampaignManager):
            metrics.watch_campaigns(reg.rollouts)
        metrics.watch_fleet(reg.store.list_vehicles, served_metadata(reg))
        try:
            _, metrics_port = metrics.serve_http(metrics_listen)
        except OSError as e:
            raise click.ClickException(
                f"--metrics-listen {metrics_listen}: {e.strerror}; pick a free port"
            ) from None
        click.echo(
            f"metrics on http://{metrics_listen.rsplit(':', 1)[0]}:{metrics_port}/metrics", err=True
        )
    audit = AuditLog(reg.store)
    try:
        server, port = create_server(
            reg,
            listen,
            metrics=metrics,
            tls_files=None if insecure else files,
            insecure=insecure,
            audit=audit,
        )
    except (tls.TlsError, OSError) as e:
        raise click.ClickException(str(e)) from None
    host = listen.rsplit(":", 1)[0]
    where = f"database {_redacted(db)}" if db else f"data {data_dir}"
    click.echo(f"registry serving on {host}:{port} ({where})", err=True)
    dash = None
    if dashboard_listen:
        from server.dashboard.source import RegistrySource
        from server.dashboard.web import DashboardAuth, serve_dashboard

        auth = DashboardAuth(
            dashboard_token or DashboardAuth.with_fresh_token().token,
            files if dashboard_mtls else None,
        )
        try:
            dash = serve_dashboard(dashboard_listen, RegistrySource(reg, audit), auth)
        except OSError as e:
            server.stop(None)
            raise click.ClickException(
                f"--dashboard-listen {dashboard_listen}: {e.strerror}; pick a free port"
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


def _check_listen(option: str, value: str) -> None:
    from server.dashboard.web import parse_port

    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise click.BadParameter(
            f"{value!r} is not HOST:PORT; e.g. 127.0.0.1:50051", param_hint=option
        )
    try:
        parse_port(port, option)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix(f"{option}: "), param_hint=option) from None


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


def _redacted(db: str) -> str:
    from server.storage.postgres_db import redact

    return redact(db)
