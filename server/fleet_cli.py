"""``ota vehicles list|show`` and ``ota audit``: the fleet inventory and the audit log."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click
from google.protobuf.json_format import MessageToDict
from rich import box
from rich.table import Table
from rich.text import Text

from otawire.cli_out import table_console
from otawire.cli_tls import client_tls_from_context
from otawire.wire import INSTALL_STATUS, to_str
from server.campaigns.cli import json_option, registry_option

_STATUS_STYLE = {
    "failed": "red",
    "rolled_back": "red",
    "attack_detected": "bold red",
    "confirmed": "green",
    "installed": "green",
}


def _options(f):
    """--registry and the publisher's TLS options (as ``ota campaign``), and --json."""
    return registry_option(json_option(f))


def _client(address: str):
    from server.fleet_service import FleetClient

    return FleetClient(address, **client_tls_from_context())


def _run(address: str, fn):
    from server.fleet_service import FleetError

    with _client(address) as c:
        try:
            return fn(c)
        except FleetError as e:
            raise click.ClickException(str(e)) from None


def _dict(msg) -> dict:
    return MessageToDict(msg, preserving_proto_field_name=True)


def _ago(ts) -> str:
    if not ts.seconds:
        return "never"
    s = max(0.0, time.time() - ts.seconds)
    return (
        f"{s:.0f} s ago"
        if s < 120
        else f"{s / 60:.0f} min ago"
        if s < 7200
        else f"{s / 3600:.1f} h ago"
    )


def _models(v) -> str:
    return ", ".join(
        f"{m.model} {m.installed_version or '–'}"
        + (
            f" (active {m.active_version})"
            if m.active_version and m.active_version != m.installed_version
            else ""
        )
        for m in v.models
    )


@click.group()
def vehicles() -> None:
    """The fleet inventory: what each vehicle runs, when it was last seen, how its last update went."""


@vehicles.command("list")
@click.option(
    "--filter",
    "filter_",
    default="",
    metavar="EXPR",
    help='AIP-160 filter, e.g. \'tags.fleet = "berlin" AND model.squeezenet1.0 = "1.0.1"\'; fields: '
    "vehicle_id, hardware_id, status, reason, campaign, tags.KEY, model.NAME, active.NAME.",
)
@_options
def list_(filter_: str, address: str, as_json: bool) -> None:
    """Vehicles that checked in, by id (all pages)."""
    found = _run(address, lambda c: c.vehicles(filter_))
    if as_json:
        click.echo(json.dumps([_dict(v) for v in found], indent=2))
        return
    table = Table(
        "vehicle",
        "hardware",
        "tags",
        "models (installed)",
        "last report",
        "campaigns",
        "last seen",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for v in found:
        rep = v.last_report if v.HasField("last_report") else None
        report = (
            Text(
                to_str(INSTALL_STATUS, rep.status),
                style=_STATUS_STYLE.get(to_str(INSTALL_STATUS, rep.status), ""),
            )
            + f" {rep.model} {rep.version}"
            + (f": {rep.reason}" if rep.reason else "")
            if rep
            else Text("none", style="dim")
        )
        table.add_row(
            v.vehicle_id,
            v.hardware_id,
            " ".join(v.tags),
            _models(v),
            report,
            " ".join(v.campaigns),
            _ago(v.last_seen_time),
        )
    table_console().print(table)
    click.echo(f"{len(found)} vehicle(s)" + (f" matching {filter_}" if filter_ else ""), err=True)


@vehicles.command("show")
@click.argument("vehicle_id")
@_options
def show(vehicle_id: str, address: str, as_json: bool) -> None:
    """Everything the registry knows of VEHICLE_ID."""
    v = _run(address, lambda c: c.vehicle(vehicle_id))
    if as_json:
        click.echo(json.dumps(_dict(v), indent=2))
        return
    rep = v.last_report if v.HasField("last_report") else None
    rows = [
        ("vehicle", v.vehicle_id),
        ("hardware", v.hardware_id),
        ("tags", " ".join(v.tags) or "none"),
        ("first seen", v.first_seen_time.ToJsonString()),
        ("last seen", f"{v.last_seen_time.ToJsonString()} ({_ago(v.last_seen_time)})"),
        ("campaigns", " ".join(v.campaigns) or "none"),
        (
            "last report",
            f"{to_str(INSTALL_STATUS, rep.status)} {rep.model} {rep.version} at {rep.report_time.ToJsonString()}"
            + (f": {rep.reason}" if rep.reason else "")
            if rep
            else "none",
        ),
    ]
    out = table_console()
    grid = Table.grid(padding=(0, 2))
    for k, val in rows:
        grid.add_row(Text(k, style="bold"), val)
    out.print(grid)
    models = Table("model", "installed", "active", box=box.SIMPLE_HEAD, pad_edge=False)
    for m in v.models:
        models.add_row(m.model, m.installed_version, m.active_version)
    out.print(models)


@click.command()
@click.option(
    "--limit", default=50, show_default=True, help="At most this many entries, newest first."
)
@click.option("--actor", default="", help="Only this actor, e.g. publisher:ml-team.")
@click.option(
    "--action", default="", help="Only this action, e.g. publish, campaign.create, keys.rotate."
)
@_options
def audit(limit: int, actor: str, action: str, address: str, as_json: bool) -> None:
    """The registry's append-only audit log: who changed what, when, with which arguments."""
    entries = _run(address, lambda c: c.audit(limit, actor, action))
    if as_json:
        click.echo(
            json.dumps(
                [{**_dict(e), "arguments": json.loads(e.arguments_json or "{}")} for e in entries],
                indent=2,
            )
        )
        return
    table = Table("time (UTC)", "actor", "action", "arguments", box=box.SIMPLE_HEAD, pad_edge=False)
    for e in entries:
        when = datetime.fromtimestamp(e.create_time.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        args = " ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in json.loads(e.arguments_json or "{}").items()
        )
        table.add_row(when, e.actor, e.action, args)
    table_console().print(table)
