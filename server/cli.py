"""``ota keys``, ``ota registry``, ``ota publish`` and ``ota models``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

console = Console(stderr=True)
DEFAULT_REGISTRY = "127.0.0.1:50051"


@click.group()
def keys() -> None:
    """Create and manage the TUF signing keys (root, targets, snapshot, timestamp)."""


@keys.command("init")
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path), required=True, envvar="OTA_KEYS",
              help="Keystore directory to create. Env: OTA_KEYS.")
@click.option("--force", is_flag=True, help="Overwrite an existing keystore (old keys are lost).")
def keys_init(keys_dir: Path, force: bool) -> None:
    """Generate ed25519 keys for each TUF role and sign root version 1.

    KEYS/root.json is the trust anchor to provision into vehicles
    (ota agent run --trusted-root KEYS/root.json).
    """
    from server.keys import Keystore, KeystoreError

    try:
        ks = Keystore.init(keys_dir, force=force)
    except KeystoreError as e:
        raise click.ClickException(str(e)) from None
    for role in ("root", "targets", "snapshot", "timestamp"):
        click.echo(f"{role:10s} {ks.keyids(role)[0]}")
    click.echo(f"trust anchor for vehicles: {keys_dir / 'root.json'}")


@click.group()
def registry() -> None:
    """Run the cloud registry."""


@registry.command("serve")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), envvar="OTA_DATA",
              help="Data directory (SQLite + blobs); with --db only a spool for uploads. Env: OTA_DATA.")
@click.option("--db", default="", envvar="OTA_DB", metavar="postgresql://…",
              help="Keep everything in this PostgreSQL database instead, shared by any number of "
                   "replicas (needs the 'pg' extra). Env: OTA_DB.")
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path), required=True, envvar="OTA_KEYS",
              help="Keystore made by `ota keys init`. Env: OTA_KEYS.")
@click.option("--listen", default=DEFAULT_REGISTRY, show_default=True, envvar="OTA_LISTEN",
              help="host:port to listen on (plain-text gRPC on loopback). Env: OTA_LISTEN.")
@click.option("--metrics-listen", default="", envvar="OTA_METRICS_LISTEN", metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free one). "
                   "Env: OTA_METRICS_LISTEN.")
def serve(data_dir: Path | None, db: str, keys_dir: Path, listen: str, metrics_listen: str) -> None:
    """Serve the Publisher and Vehicle gRPC services until SIGINT/SIGTERM."""
    from server.keys import KeystoreError
    from server.registry import Registry
    from server.service import create_server
    from server.storage import StorageError

    if not db and data_dir is None:
        raise click.UsageError("give --data DIR (embedded SQLite) or --db postgresql://… (shared database)")
    try:
        reg = Registry.open(data_dir, keys_dir, db=db or None)
    except (KeystoreError, StorageError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    metrics = None
    if metrics_listen:
        from server.metrics import RegistryMetrics

        def codec_of(blob_sha256: str) -> str | None:
            rec = reg.store.encoding_by_blob(blob_sha256)
            return rec.codec if rec else None

        metrics = RegistryMetrics(codec_of=codec_of)
        if reg.rollouts is not None:
            metrics.watch_campaigns(reg.rollouts)
        _, metrics_port = metrics.serve_http(metrics_listen)
        click.echo(f"metrics on http://{metrics_listen.rsplit(':', 1)[0]}:{metrics_port}/metrics", err=True)
    server, port = create_server(reg, listen, metrics=metrics)
    host = listen.rsplit(":", 1)[0]
    where = f"database {_redacted(db)}" if db else f"data {data_dir}"
    click.echo(f"registry serving on {host}:{port} ({where})", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    click.echo("stopping: finishing in-flight calls (5 s grace)", err=True)
    server.stop(grace=5).wait()
    reg.store.close()


def _redacted(db: str) -> str:
    from server.storage_pg import redact

    return redact(db)


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name, e.g. squeezenet1.0.")
@click.option("--version", "version", required=True, help="Semantic version, e.g. 1.0.0.")
@click.option("--registry", "address", default=DEFAULT_REGISTRY, show_default=True, envvar="OTA_REGISTRY",
              help="Registry address. Env: OTA_REGISTRY.")
@click.option("--hardware-id", "hardware_ids", multiple=True, help="Hardware ids it may run on (repeatable; none = any).")
def publish(model: Path, name: str, version: str, address: str, hardware_ids: tuple[str, ...]) -> None:
    """Validate MODEL (onnx.checker), upload it and have the registry sign it."""
    from server.client import PublishError, PublisherClient
    from server.registry import RegistryError

    data = model.read_bytes()
    with PublisherClient(address) as client, Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(f"upload {name} {version}", total=len(data))
        try:
            resp = client.upload(data, name, version, hardware_ids,
                                 progress=lambda done, total: bar.update(task, completed=done))
        except RegistryError as e:
            raise click.ClickException(f"{model}: refused before upload: {e}") from None
        except PublishError as e:
            raise click.ClickException(f"registry {address} refused {name} {version}: {e}") from None
    click.echo(f"published {resp.name} {resp.version}: {resp.length:,} B, sha256 {resp.sha256}, target {resp.target_path}")


@click.command()
@click.option("--registry", "address", default=DEFAULT_REGISTRY, show_default=True, envvar="OTA_REGISTRY")
@click.option("--name", default="", help="Only this model.")
def models(address: str, name: str) -> None:
    """List published models and versions."""
    from server.client import PublishError, PublisherClient

    with PublisherClient(address) as client:
        try:
            versions = client.list(name)
        except PublishError as e:
            raise click.ClickException(f"registry {address}: {e}") from None
    table = Table("name", "version", "bytes", "sha256", "hardware", "published")
    for v in versions:
        table.add_row(v.name, v.version, f"{v.length:,}", v.sha256[:16], ",".join(v.hardware_ids) or "any", v.published_at)
    Console().print(table)
