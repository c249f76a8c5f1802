"""``ota release``, ``ota releases``, ``ota rerelease``, ``ota registry verify`` and ``ota registry gc``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from otawire.cli_tls import tls_files, tls_options
from server.registry_cli import registry
from server.signing.cli import DEFAULT_REGISTRY
from server.signing.cli import keystore as _keystore


def _client(address: str, tls_ca, tls_cert, tls_key, insecure: bool):
    from server.client import PublisherClient

    return PublisherClient(
        address, tls_files=tls_files(tls_ca, tls_cert, tls_key, insecure), insecure=insecure
    )


@click.command()
@click.argument("name")
@click.argument("version")
@click.option(
    "--fleet", is_flag=True, help="Every vehicle (that runs NAME on hardware VERSION supports)."
)
@click.option(
    "--tag", default="", metavar="K=V", help="Vehicles carrying this tag, e.g. fleet=eu-taxi."
)
@click.option("--vehicle", default="", metavar="ID", help="One vehicle.")
@click.option("--reason", default="", help="Recorded in the release log (`ota releases`).")
@click.option(
    "--registry",
    "address",
    default=DEFAULT_REGISTRY,
    show_default=True,
    envvar="OTA_REGISTRY",
    help="Registry address. Env: OTA_REGISTRY.",
)
@tls_options("publisher")
def release(
    name: str,
    version: str,
    fleet: bool,
    tag: str,
    vehicle: str,
    reason: str,
    address: str,
    tls_ca,
    tls_cert,
    tls_key,
    insecure: bool,
) -> None:
    """Send the published NAME VERSION to vehicles, from their next check-in.

    Publishing only stores and signs; nothing reaches a vehicle until a release
    (or a campaign: `ota campaign create`) says so. Exactly one of --fleet,
    --tag K=V or --vehicle ID.
    """
    from server.client import PublishError
    from server.errors import RegistryError
    from server.releases import describe_scope, scope_of

    try:
        scope = scope_of(fleet, tag, vehicle)
    except RegistryError as e:
        raise click.UsageError(f"{name} {version}: {e}") from None
    with _client(address, tls_ca, tls_cert, tls_key, insecure) as client:
        try:
            client.release(name, version, scope, reason)
        except PublishError as e:
            raise click.ClickException(f"registry {address}: {e}") from None
    click.echo(f"released {name} {version} to {describe_scope(scope)}")


@click.command()
@click.argument("name", required=False, default="")
@click.option(
    "--registry",
    "address",
    default=DEFAULT_REGISTRY,
    show_default=True,
    envvar="OTA_REGISTRY",
    help="Registry address. Env: OTA_REGISTRY.",
)
@tls_options("publisher")
def releases(name: str, address: str, tls_ca, tls_cert, tls_key, insecure: bool) -> None:
    """The release log, oldest first: releases, allowed downgrades, re-releases; who and why."""
    from server.client import PublishError
    from server.releases import describe_scope

    with _client(address, tls_ca, tls_cert, tls_key, insecure) as client:
        try:
            log = client.releases(name)
        except PublishError as e:
            raise click.ClickException(f"registry {address}: {e}") from None
    for r in log:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.at))
        to = f"  to {describe_scope(r.scope)}" if r.scope else ""
        why = f"  reason: {r.reason}" if r.reason else ""
        click.echo(f"{when}  {r.kind:<9}  {r.name} {r.version}{to}  by {r.actor or 'unknown'}{why}")
    if not log:
        click.echo("nothing released yet" + (f" of {name}" if name else ""))


_STORAGE = [
    click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="OTA_DATA",
        help="The registry's data directory (SQLite + blobs). Env: OTA_DATA.",
    ),
    click.option(
        "--db",
        default="",
        envvar="OTA_DB",
        metavar="postgresql://…",
        help="Or the registry's PostgreSQL database. Env: OTA_DB.",
    ),
]


def _storage_options(f):
    for opt in reversed(_STORAGE):
        f = opt(f)
    return f


def _open(data_dir: Path | None, db: str):
    from server.storage import StorageError, open_storage

    if not db and data_dir is None:
        raise click.UsageError(
            "give --data DIR (embedded SQLite) or --db postgresql://… (shared database)"
        )
    if data_dir is not None and not db and not (data_dir / "registry.sqlite3").exists():
        raise click.UsageError(f"--data {data_dir}: no registry there (no registry.sqlite3)")
    try:
        return open_storage(data_dir, db or None)
    except (StorageError, ImportError) as e:
        raise click.ClickException(str(e)) from None


@click.command("verify")
@_storage_options
def verify(data_dir: Path | None, db: str) -> None:
    """Hash every blob a version or encoding references; move bad ones aside.

    A running registry stops offering a blob moved aside at once. Publishing the
    same file again restores it. Exit status 1 when a blob is bad or missing.
    """
    from server.integrity import verify_all

    store, blobs = _open(data_dir, db)
    try:
        checked, bad = verify_all(store, blobs)
    finally:
        store.close()
    for b in bad:
        click.echo(f"BAD  {b.sha256[:12]}…  {b.what}: {b.problem}")
    if bad:
        raise click.ClickException(
            f"{len(bad)} of {checked} blobs are bad or missing and out of service; "
            "re-publish each version's file to restore it"
        )
    click.echo(f"all {checked} referenced blobs match their sha256")


@click.command("gc")
@_storage_options
@click.option(
    "--min-age",
    "min_age_s",
    default=3600.0,
    show_default=True,
    help="Keep anything younger (seconds): a blob committed a moment ago may be about to be recorded.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def gc(data_dir: Path | None, db: str, min_age_s: float, dry_run: bool) -> None:
    """Remove blobs that no version, encoding or signed target references, and stale staged uploads."""
    from server.integrity import collect_garbage
    from server.staging import Staging

    store, blobs = _open(data_dir, db)
    try:
        garbage = collect_garbage(store, blobs, min_age_s, dry_run)
    finally:
        store.close()
    staged = Staging(data_dir / "staging").sweep(min_age_s, dry_run) if data_dir is not None else []
    verb = "would remove" if dry_run else "removed"
    for g in garbage:
        click.echo(f"{verb} {g.sha256[:12]}…  {g.size:,} B")
    click.echo(
        f"{verb} {len(garbage)} unreferenced blob(s), {sum(g.size for g in garbage):,} B"
        + (f", and {len(staged)} stale staged upload(s)" if staged else "")
    )


@click.command()
@click.argument("name")
@click.argument("version")
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    envvar="OTA_KEYS",
    help="Keystore with the (offline) targets key. Env: OTA_KEYS.",
)
@click.option(
    "--registry", "address", default=DEFAULT_REGISTRY, show_default=True, envvar="OTA_REGISTRY"
)
@tls_options("publisher")
def rerelease(
    name: str, version: str, keys_dir: Path, address: str, tls_ca, tls_cert, tls_key, insecure: bool
) -> None:
    """Sign NAME VERSION again as the newest release, so vehicles may go back to it.

    Vehicles never install a lower release counter than they run (rollback
    protection); run this before a rollback campaign to an older version.
    """
    from server.client import PublisherClient, PublishError
    from server.signing.errors import TufError

    with PublisherClient(
        address, tls_files=tls_files(tls_ca, tls_cert, tls_key, insecure), insecure=insecure
    ) as client:
        try:
            counter = client.rerelease(_keystore(keys_dir), name, version)
        except (PublishError, TufError) as e:
            raise click.ClickException(f"registry {address}: {e}") from None
    click.echo(f"{name} {version} re-released with release counter {counter}")


registry.add_command(verify)
registry.add_command(gc)
