"""``ota keys``: create, rotate, revoke and hand in the TUF signing keys."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from otawire.cli_out import table_console
from otawire.cli_tls import tls_files, tls_options

console = Console(stderr=True)
DEFAULT_REGISTRY = "127.0.0.1:50051"


@click.group()
def keys() -> None:
    """Create and manage the TUF signing keys (root, targets, snapshot, timestamp)."""


_KEYS_OPT = click.option(
    "--keys",
    "keys_dir",
    type=click.Path(path_type=Path),
    required=True,
    envvar="OTA_KEYS",
    help="Keystore directory. Env: OTA_KEYS.",
)


def keystore(keys_dir: Path):
    from server.signing.keys import Keystore, KeystoreError

    try:
        return Keystore(keys_dir)
    except KeystoreError as e:
        raise click.ClickException(str(e)) from None


def _print_keys(ks) -> None:
    table = Table("role", "threshold", "key ids", "private key here")
    for role in ("root", "targets", "snapshot", "timestamp", "director"):
        ids = ks.keyids(role)
        here = sum(ks.signer_for(k) is not None for k in ids)
        table.add_row(
            role,
            f"{ks.threshold(role)} of {len(ids)}",
            " ".join(k[:12] for k in ids),
            f"{here}/{len(ids)}",
        )
    table_console(stderr=True).print(table)


@keys.command("init")
@_KEYS_OPT
@click.option("--force", is_flag=True, help="Overwrite an existing keystore (old keys are lost).")
@click.option("--root-keys", default=3, show_default=True, help="How many root keys.")
@click.option(
    "--root-threshold", default=2, show_default=True, help="How many root signatures a root needs."
)
@click.option(
    "--expires",
    default="",
    help="Metadata lifetimes, e.g. timestamp=6h,snapshot=7d,targets=4w,root=365d.",
)
def keys_init(
    keys_dir: Path, force: bool, root_keys: int, root_threshold: int, expires: str
) -> None:
    """Generate ed25519 keys per role and sign both roots (image repository, director).

    KEYS/root.json and KEYS/director-root.json are the trust anchors to provision
    into vehicles (ota agent run --trusted-root ... --director-root ...).
    Root and targets keys belong offline: give the registry `ota keys online`.
    """
    from server.signing.keys import Expiries, Keystore, KeystoreError

    try:
        ks = Keystore.init(
            keys_dir,
            Expiries.parse(expires),
            force=force,
            root_keys=root_keys,
            root_threshold=root_threshold,
        )
    except KeystoreError as e:
        raise click.ClickException(str(e)) from None
    _print_keys(ks)
    click.echo(
        f"trust anchors for vehicles: {keys_dir / 'root.json'} {keys_dir / 'director-root.json'}"
    )


@keys.command("online")
@_KEYS_OPT
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the registry's copy (online keys only).",
)
def keys_online(keys_dir: Path, out: Path) -> None:
    """Export the registry's keystore: snapshot, timestamp and director keys only."""
    ks = keystore(keys_dir).export_online(out)
    _print_keys(ks)
    click.echo(f"online keystore for the registry: {out} (root and targets private keys left out)")


@keys.command("show")
@_KEYS_OPT
def keys_show(keys_dir: Path) -> None:
    """Show roles, thresholds, key ids and which private keys are present."""
    _print_keys(keystore(keys_dir))


def _push(ks, address: str, tls_kw: dict) -> None:
    from tuf.api.metadata import Metadata

    from server.client import PublisherClient, PublishError

    try:
        with PublisherClient(address, **tls_kw) as client:
            for repo, role in (("image", "root"), ("director", "director-root")):
                served = Metadata.from_bytes(client.get_metadata(role))
                for data in ks.root_history(repo):
                    if Metadata.from_bytes(data).signed.version > served.signed.version:
                        v = client.put_metadata(role, data)
                        click.echo(f"registry {address} now serves {role} v{v}")
            try:
                client.served_targets(ks)
            except PublishError:
                if ks.has_private("targets"):
                    click.echo(
                        f"registry {address} now serves targets v{client.resign_targets(ks)} (re-signed)"
                    )
    except PublishError as e:
        raise click.ClickException(f"registry {address}: {e}") from None


def _registry_opts(f):
    f = tls_options("publisher")(f)
    return click.option(
        "--registry",
        "address",
        default=None,
        envvar="OTA_REGISTRY",
        help="Also hand the new root (and re-signed targets) to this registry.",
    )(f)


@keys.command("rotate")
@click.argument("role", type=click.Choice(["root", "targets", "snapshot", "timestamp", "director"]))
@_KEYS_OPT
@_registry_opts
def keys_rotate(
    role: str, keys_dir: Path, address: str | None, tls_ca, tls_cert, tls_key, insecure: bool
) -> None:
    """Replace ROLE's keys; sign the next root with the old and new root keys.

    Vehicles follow the rotation through the root chain. After rotating an
    online role (snapshot, timestamp, director), give the registry the new key
    (`ota keys online`) before handing it the root (`ota keys push`); the
    registry refuses a root it could not serve under.
    """
    from server.signing.keys import KeystoreError

    ks = keystore(keys_dir)
    try:
        new = ks.rotate(role)
    except KeystoreError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{role}: new keys {' '.join(k[:12] for k in new)}")
    if address:
        _push(
            ks,
            address,
            {"tls_files": tls_files(tls_ca, tls_cert, tls_key, insecure), "insecure": insecure},
        )


@keys.command("revoke")
@click.argument("keyid")
@_KEYS_OPT
@_registry_opts
def keys_revoke(
    keyid: str, keys_dir: Path, address: str | None, tls_ca, tls_cert, tls_key, insecure: bool
) -> None:
    """Remove key KEYID (a prefix will do) from its role in a new root version."""
    from server.signing.keys import KeystoreError

    ks = keystore(keys_dir)
    try:
        role = ks.role_of(keyid)
        added = ks.revoke(keyid)
    except KeystoreError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"{role}: revoked {keyid[:12]}"
        + (f", added {added[0][:12]} to keep the threshold" if added else "")
    )
    if address:
        _push(
            ks,
            address,
            {"tls_files": tls_files(tls_ca, tls_cert, tls_key, insecure), "insecure": insecure},
        )


@keys.command("push")
@_KEYS_OPT
@click.option("--registry", "address", required=True, envvar="OTA_REGISTRY")
@tls_options("publisher")
def keys_push(keys_dir: Path, address: str, tls_ca, tls_cert, tls_key, insecure: bool) -> None:
    """Hand the registry root versions it lacks, and re-sign targets if their key changed."""
    _push(
        keystore(keys_dir),
        address,
        {"tls_files": tls_files(tls_ca, tls_cert, tls_key, insecure), "insecure": insecure},
    )


@keys.command("refresh-targets")
@_KEYS_OPT
@click.option("--registry", "address", required=True, envvar="OTA_REGISTRY")
@tls_options("publisher")
def keys_refresh_targets(
    keys_dir: Path, address: str, tls_ca, tls_cert, tls_key, insecure: bool
) -> None:
    """Sign the served targets again with a fresh expiry (the targets key is offline)."""
    from server.client import PublisherClient, PublishError

    with PublisherClient(
        address, tls_files=tls_files(tls_ca, tls_cert, tls_key, insecure), insecure=insecure
    ) as c:
        try:
            click.echo(
                f"registry {address} now serves targets v{c.resign_targets(keystore(keys_dir))}"
            )
        except PublishError as e:
            raise click.ClickException(f"registry {address}: {e}") from None
