"""``ota certs``, ``ota registry``, ``ota publish``, ``ota models`` and ``ota director`` (``ota rerelease`` lives in release_cli).

``ota keys`` is in ``server/signing/cli.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from otawire.cli_out import table_console
from otawire.cli_tls import tls_files, tls_options
from server.signing.cli import DEFAULT_REGISTRY
from server.signing.cli import keystore as _keystore

console = Console(stderr=True)


@click.group()
def certs() -> None:
    """Make the fleet PKI for mutual TLS: a CA, the registry's, vehicles' and publishers' certificates."""


_PKI_OPT = click.option(
    "--pki",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    envvar="OTA_PKI",
    help="PKI directory (holds the CA key: keep it offline). Env: OTA_PKI.",
)


@certs.command("init")
@_PKI_OPT
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("localhost", "127.0.0.1"),
    show_default=True,
    help="Names/addresses the registry's server certificate is valid for (repeatable).",
)
def certs_init(pki: Path, hosts: tuple[str, ...]) -> None:
    """Create the fleet CA and the registry's server certificate."""
    from otawire import tls

    try:
        tls.make_ca(pki)
        files = tls.issue(pki, "server", "registry", hosts=hosts)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"CA {files.ca}; registry: --ca {files.ca} --cert {files.cert} --key {files.key}")


def _issue(pki: Path, role: str, name: str) -> None:
    from otawire import tls

    try:
        files = tls.issue(pki, role, name)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{role} {name}: --ca {files.ca} --cert {files.cert} --key {files.key}")


@certs.command("vehicle")
@click.argument("vehicle_id")
@_PKI_OPT
def certs_vehicle(vehicle_id: str, pki: Path) -> None:
    """Issue VEHICLE_ID's client certificate (also signs its version manifests)."""
    _issue(pki, "vehicle", vehicle_id)


@certs.command("publisher")
@click.argument("name")
@_PKI_OPT
def certs_publisher(name: str, pki: Path) -> None:
    """Issue a publisher's client certificate (the only kind the publisher API accepts)."""
    _issue(pki, "publisher", name)


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name, e.g. squeezenet1.0.")
@click.option("--version", "version", required=True, help="Semantic version, e.g. 1.0.0.")
@click.option(
    "--registry",
    "address",
    default=DEFAULT_REGISTRY,
    show_default=True,
    envvar="OTA_REGISTRY",
    help="Registry address. Env: OTA_REGISTRY.",
)
@click.option(
    "--hardware-id",
    "hardware_ids",
    multiple=True,
    help="Hardware ids it may run on (repeatable; none = any).",
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="OTA_KEYS",
    help="Keystore with the (offline) targets key: sign the targets here, not on the registry. Env: OTA_KEYS.",
)
@click.option(
    "--release-counter",
    type=int,
    default=None,
    help="Release counter to sign (default: one above the highest for this model).",
)
@click.option(
    "--allow-downgrade",
    is_flag=True,
    help="Publish a version below the highest published (refused otherwise); needs --reason.",
)
@click.option("--reason", default="", help="Why (recorded with your name in `ota releases`).")
@tls_options("publisher")
def publish(
    model: Path,
    name: str,
    version: str,
    address: str,
    hardware_ids: tuple[str, ...],
    keys_dir: Path | None,
    release_counter: int | None,
    allow_downgrade: bool,
    reason: str,
    tls_ca,
    tls_cert,
    tls_key,
    insecure: bool,
) -> None:
    """Validate MODEL (onnx.checker), sign its target (with --keys) and upload it.

    Publishing stores and signs; no vehicle is offered it until `ota release`
    (or a campaign) says so.
    """
    from server.client import PublisherClient, PublishError
    from server.errors import RegistryError
    from server.signing.keys import KeystoreError

    data = model.read_bytes()
    ks = _keystore(keys_dir) if keys_dir else None
    tls_kw: dict[str, Any] = {
        "tls_files": tls_files(tls_ca, tls_cert, tls_key, insecure),
        "insecure": insecure,
    }
    with (
        PublisherClient(address, **tls_kw) as client,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task(f"upload {name} {version}", total=len(data))
        try:
            resp = client.upload(
                data,
                name,
                version,
                hardware_ids,
                keys=ks,
                release_counter=release_counter,
                allow_downgrade=allow_downgrade,
                reason=reason,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        except KeystoreError as e:
            raise click.ClickException(f"cannot sign {name} {version}: {e}") from None
        except RegistryError as e:
            raise click.ClickException(f"{model}: refused before upload: {e}") from None
        except PublishError as e:
            said = str(e)
            raise click.ClickException(
                said if said.startswith(f"{name} {version} ") else f"{name} {version}: {said}"
            ) from None
    click.echo(
        f"published {resp.name} {resp.version}: {resp.length:,} B, sha256 {resp.sha256}, target {resp.target_path}"
    )
    click.echo(
        f"offered to no vehicle yet: `ota release {resp.name} {resp.version} --fleet|--tag K=V|--vehicle ID`"
    )


@click.command()
@click.option(
    "--registry",
    "address",
    default=DEFAULT_REGISTRY,
    show_default=True,
    envvar="OTA_REGISTRY",
    help="Registry address. Env: OTA_REGISTRY.",
)
@click.option("--name", default="", help="Only this model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@tls_options("publisher")
def models(
    address: str, name: str, as_json: bool, tls_ca, tls_cert, tls_key, insecure: bool
) -> None:
    """List published models and versions."""
    from server.client import PublisherClient, PublishError

    with PublisherClient(
        address, tls_files=tls_files(tls_ca, tls_cert, tls_key, insecure), insecure=insecure
    ) as client:
        try:
            versions = client.list(name)
        except PublishError as e:
            raise click.ClickException(str(e)) from None
    if as_json:
        from google.protobuf.json_format import MessageToDict

        click.echo(
            json.dumps(
                [MessageToDict(v, preserving_proto_field_name=True) for v in versions], indent=2
            )
        )
        return
    table = Table("name", "version", "bytes", "sha256", "hardware", "published")
    for v in versions:
        table.add_row(
            v.name,
            v.version,
            f"{v.length:,}",
            v.sha256[:16],
            ",".join(v.hardware_ids) or "any",
            v.published_at,
        )
    table_console().print(table)


@click.group()
def director() -> None:
    """Per-vehicle instructions (Uptane's director)."""


@director.command("assign")
@click.argument("vehicle_id")
@click.argument("name")
@click.argument("version", required=False, default="")
@click.option(
    "--registry", "address", default=DEFAULT_REGISTRY, show_default=True, envvar="OTA_REGISTRY"
)
@tls_options("publisher")
def director_assign(
    vehicle_id: str,
    name: str,
    version: str,
    address: str,
    tls_ca,
    tls_cert,
    tls_key,
    insecure: bool,
) -> None:
    """VEHICLE_ID must install NAME VERSION (no VERSION: back to the latest for its hardware)."""
    from server.client import PublisherClient, PublishError

    with PublisherClient(
        address, tls_files=tls_files(tls_ca, tls_cert, tls_key, insecure), insecure=insecure
    ) as client:
        try:
            client.assign(vehicle_id, name, version)
        except PublishError as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"{vehicle_id}: {name} {version or '(latest for its hardware)'}")
