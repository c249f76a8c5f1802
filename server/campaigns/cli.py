"""``ota campaign create|list|status|pause|resume|abort|rollback``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import click
from google.protobuf.json_format import MessageToDict
from rich import box
from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from otawire.cli_out import table_console
from otawire.cli_tls import client_tls_from_context
from otawire.v1 import campaigns_pb2 as pb
from server.campaigns.service import CampaignClient, CampaignError

T = TypeVar("T")

DEFAULT_REGISTRY = "127.0.0.1:50051"
_STATE_STYLE = {
    "running": "cyan",
    "paused": "yellow",
    "aborted": "bold red",
    "completed": "bold green",
}


def _console() -> Console:
    """A console per command, so that the terminal width is read when output is written (none when piped)."""
    return table_console()


def _as_json(msg) -> dict:
    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def render_status(s: pb.CampaignStatus) -> Group:
    """A campaign as rich renderables: header, one row per wave with a progress bar, failures grouped."""
    spec = s.spec
    style = _STATE_STYLE.get(s.state, "")
    head = Text.assemble(
        (f"{s.campaign_id}", "bold"),
        f"  {spec.name!r}  {spec.model} {spec.version}  ",
        (s.state.upper(), style),
        f"  {s.vehicles} vehicles",
        f"  (rollback of {spec.rollback_of})" if spec.rollback_of else "",
    )
    parts: list = [head]
    if s.state_reason:
        parts.append(Text(f"  reason: {s.state_reason}", style=style))
    success = "confirmed" if spec.require_confirmed else "installed or confirmed"
    waves = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption_justify="left",
        caption=f"ok = {success}; flight = offered, no result yet; soak = soaked/minimum seconds",
    )
    for col in ("wave", "progress", "ok", "need", "flight", "pend", "fail", "t/o", "soak", "state"):
        waves.add_column(col, min_width=10 if col == "progress" else None, no_wrap=True)
    for w in s.waves:
        ok = w.confirmed + (0 if spec.require_confirmed else w.installed)
        bar = ProgressBar(
            total=max(w.size, 1),
            completed=ok if w.size else 1,
            width=10,
            complete_style="red" if w.failed + w.timed_out else "green",
        )
        soak = (
            f"{w.soaked_s:,.0f}/{w.min_soak_s:,.0f}s" if w.opened_at else f"–/{w.min_soak_s:,.0f}s"
        )
        waves.add_row(
            f"{w.index} {w.percent:g}%",
            bar,
            f"{ok}/{w.size}",
            f"{w.success_share:.0%}",
            str(w.in_flight),
            str(w.pending),
            Text(str(w.failed), style="red" if w.failed else ""),
            Text(str(w.timed_out), style="red" if w.timed_out else ""),
            soak,
            Text(w.state, style="cyan" if w.state == "open" else ""),
        )
    parts.append(waves)
    if s.failures:
        fails = Table(
            "status",
            "n",
            "reason",
            "e.g.",
            title="failures, grouped by reason",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for f in s.failures:
            fails.add_row(
                Text(f.status, style="red"), str(f.count), f.reason, ", ".join(f.vehicle_ids[:3])
            )
        parts.append(fails)
    if s.events:
        parts.append(render_history(s.events))
    return Group(*parts)


def _event_detail(e: pb.CampaignEvent) -> str:
    try:
        d = json.loads(e.detail) if e.detail else {}
    except ValueError:
        return e.detail
    if not isinstance(d, dict):
        return e.detail
    words = [str(d["reason"])] if d.get("reason") else []
    words += [f"{k}={v}" for k, v in d.items() if k in ("vehicles", "rollback")]
    if d.get("acknowledged"):
        words.append(f"acknowledged {len(d['acknowledged'])} failures")
    return "; ".join(words)


def render_history(events) -> Table:
    """The campaign's event log: when, what, which wave, who (certificate identity or registry)."""
    t = Table(
        "time (UTC)",
        "event",
        "wave",
        "by",
        "detail",
        title="history",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for e in events:
        t.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.at)),
            e.kind,
            "" if e.wave < 0 else str(e.wave),
            e.actor or "–",
            _event_detail(e),
        )
    return t


def _client(address: str) -> CampaignClient:
    return CampaignClient(address, **client_tls_from_context())


def _call(address: str, fn: Callable[[CampaignClient], T]) -> T:
    with _client(address) as c:
        try:
            return fn(c)
        except CampaignError as e:
            raise click.ClickException(str(e)) from None


def _show(status: pb.CampaignStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_as_json(status), indent=2))
    else:
        _console().print(render_status(status))


def registry_option(f: Callable) -> Callable:
    """--registry, and the publisher's TLS options (security, issue 4)."""
    from otawire.cli_tls import tls_options

    f = tls_options("publisher", expose=False)(f)
    return click.option(
        "--registry",
        "address",
        default=DEFAULT_REGISTRY,
        show_default=True,
        envvar="OTA_REGISTRY",
        help="Registry address. Env: OTA_REGISTRY.",
    )(f)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
def campaign() -> None:
    """Roll a model version out to the fleet in waves, with canaries, thresholds and rollback."""


def _parse_waves(text: str, success_share: float, soak_s: float) -> tuple:
    from server.campaigns.rollout import WaveSpec

    try:
        percents = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected cumulative percents like 1,10,50,100"
        ) from None
    return tuple(WaveSpec(p, success_share, soak_s) for p in percents)


@campaign.command("create")
@click.option("--model", required=True, help="Model name, e.g. squeezenet1.0.")
@click.option(
    "--version", "version", required=True, help="The version to roll out (must be published)."
)
@click.option("--name", default="", help="A name for people.")
@click.option(
    "--hardware-id", "hardware_ids", multiple=True, help="Only these hardware ids (repeatable)."
)
@click.option(
    "--tag", "tags", multiple=True, help="Only vehicles carrying all these tags (repeatable)."
)
@click.option("--fleet", default="", help="Only this fleet (same as --tag fleet=NAME).")
@click.option("--vehicle", "vehicles", multiple=True, help="Only these vehicle ids (repeatable).")
@click.option(
    "--waves",
    default="1,10,50,100",
    show_default=True,
    help="Cumulative percent of the selection per wave.",
)
@click.option(
    "--success-share",
    default=0.95,
    show_default=True,
    help="Share of a wave that must succeed to advance.",
)
@click.option(
    "--soak",
    "soak_s",
    default=600.0,
    show_default=True,
    help="Minimum seconds each wave runs before advancing.",
)
@click.option(
    "--trip-failures", default=0, show_default=True, help="Trip after this many failures (0 = off)."
)
@click.option(
    "--trip-share",
    default=0.05,
    show_default=True,
    help="Trip when failures / wave size exceeds this (0 = off).",
)
@click.option(
    "--on-threshold",
    type=click.Choice(["abort", "pause"]),
    default="abort",
    show_default=True,
    help="What tripping the error threshold does to the campaign.",
)
@click.option(
    "--max-concurrent",
    default=0,
    show_default=True,
    help="Concurrent downloads at most (0 = unlimited).",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=3600.0,
    show_default=True,
    help="Seconds an offered vehicle has to finish.",
)
@click.option(
    "--require-confirmed",
    is_flag=True,
    help="Count only vehicles confirmed healthy after their health window.",
)
@registry_option
@json_option
def create(
    model: str,
    version: str,
    name: str,
    hardware_ids: tuple[str, ...],
    tags: tuple[str, ...],
    fleet: str,
    vehicles: tuple[str, ...],
    waves: str,
    success_share: float,
    soak_s: float,
    trip_failures: int,
    trip_share: float,
    on_threshold: str,
    max_concurrent: int,
    timeout_s: float,
    require_confirmed: bool,
    address: str,
    as_json: bool,
) -> None:
    """Create a campaign and open its first (canary) wave."""
    from server.campaigns.rollout import CampaignSpec, TargetSelection, Threshold

    spec = CampaignSpec(
        name=name or f"{model} {version}",
        model=model,
        version=version,
        target=TargetSelection(
            hardware_ids, tags + ((f"fleet={fleet}",) if fleet else ()), vehicles
        ),
        waves=_parse_waves(waves, success_share, soak_s),
        threshold=Threshold(trip_failures, trip_share, on_threshold),
        max_concurrent_downloads=max_concurrent,
        timeout_s=timeout_s,
        require_confirmed=require_confirmed,
    )
    _show(_call(address, lambda c: c.create(spec)), as_json)


@campaign.command("list")
@registry_option
@json_option
def list_(address: str, as_json: bool) -> None:
    """List campaigns, oldest first."""
    items = _call(address, lambda c: c.list())
    if as_json:
        click.echo(json.dumps([_as_json(s) for s in items], indent=2))
        return
    table = Table(
        "id",
        "name",
        "model",
        "version",
        "state",
        "wave",
        "vehicles",
        "ok",
        "failed",
        "created (UTC)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for s in items:
        ok = sum(w.installed + w.confirmed for w in s.waves)
        bad = sum(w.failed + w.timed_out for w in s.waves)
        table.add_row(
            s.campaign_id,
            s.spec.name,
            s.spec.model,
            s.spec.version,
            Text(s.state, style=_STATE_STYLE.get(s.state, "")),
            f"{s.current_wave + 1}/{len(s.waves)}",
            str(s.vehicles),
            str(ok),
            str(bad),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(s.created_at)),
        )
    _console().print(table)


@campaign.command("status")
@click.argument("campaign_id")
@registry_option
@json_option
def status(campaign_id: str, address: str, as_json: bool) -> None:
    """Waves with progress bars, failures grouped by reason, and who did what (history)."""
    _show(_call(address, lambda c: c.get(campaign_id)), as_json)


def _action(verb: str, doc: str) -> click.Command:
    @click.command(verb, help=doc)
    @click.argument("campaign_id")
    @click.option("--reason", default="", help="Recorded in the campaign's event log.")
    @registry_option
    @json_option
    def cmd(campaign_id: str, reason: str, address: str, as_json: bool) -> None:
        _show(_call(address, lambda c: getattr(c, verb)(campaign_id, reason)), as_json)

    return cmd


campaign.add_command(
    _action("pause", "Stop offering the version to new vehicles; vehicles under way finish.")
)
campaign.add_command(
    _action("resume", "Resume a paused campaign; failures so far are acknowledged.")
)
campaign.add_command(_action("abort", "Stop the campaign for good; its version stays withheld."))


@campaign.command("rollback")
@click.argument("campaign_id")
@click.option(
    "--to",
    "to_version",
    default="",
    help="Version to return to (default: what those vehicles ran before).",
)
@click.option("--reason", default="", help="Recorded in the event log.")
@registry_option
@json_option
def rollback(campaign_id: str, to_version: str, reason: str, address: str, as_json: bool) -> None:
    """Send the previous version to every vehicle that took this campaign's version."""
    _show(_call(address, lambda c: c.rollback(campaign_id, to_version, reason)), as_json)
