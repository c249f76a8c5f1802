"""``ota registry serve``: the registry process (gRPC, and optionally metrics and the dashboard)."""

from __future__ import annotations

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
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    envvar="OTA_WORKERS",
    help="Registry processes sharing the port (SO_REUSEPORT; the kernel spreads connections): "
    "one per core. With --metrics-listen HOST:P, worker i serves metrics on P+i. Env: OTA_WORKERS.",
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
    workers: int,
    dashboard_listen: str,
    dashboard_token: str,
    dashboard_mtls: bool,
    tls_ca,
    tls_cert,
    tls_key,
    insecure: bool,
) -> None:
    """Run the registry; blocks until Ctrl-C or SIGTERM.

    Publisher, Vehicle, Campaigns and Fleet over gRPC (with health and reflection);
    Prometheus metrics with --metrics-listen, the read-only dashboard with --dashboard-listen.

    Mutual TLS by default. KEYS needs only the online keys (`ota keys online`).
    With --insecure, --ca alone still lets the director verify vehicle manifests.
    """
    from server.serve_cli import ServeJob, serve_one, serve_workers

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
    _check_port_free(listen)
    files = tls_files(tls_ca, tls_cert, tls_key, insecure, required=not (insecure and tls_ca))
    if dashboard_mtls and files is None:
        raise click.UsageError("--dashboard-mtls needs the registry's --ca/--cert/--key")
    job = ServeJob(
        data_dir,
        db,
        keys_dir,
        listen,
        metrics_listen,
        None if insecure else files,
        insecure,
        tls_ca,
        dashboard_listen,
        dashboard_token,
        dashboard_mtls,
    )
    if workers == 1:
        serve_one(job)
    else:
        serve_workers(job, workers)


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


def _check_port_free(listen: str) -> None:
    """Refuse a port another process listens on: gRPC sets SO_REUSEPORT, so it would share it."""
    import socket

    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError as e:
            raise click.ClickException(
                f"cannot listen on {listen} ({e.strerror}): is another registry running there? "
                "Stop it or pick another --listen port"
            ) from None


def _redacted(db: str) -> str:
    from server.storage.postgres_db import redact

    return redact(db)
