"""``ota agent run`` / ``ota agent status``."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn
from rich.table import Table

from otawire.cli_out import table_console
from otawire.cli_tls import tls_files, tls_options

if TYPE_CHECKING:
    from vehicle_agent.journal import Entry

console = Console(stderr=True)


@click.group()
def agent() -> None:
    """The in-car vehicle agent."""


@agent.command("run")
@click.option(
    "--registry",
    "address",
    default="127.0.0.1:50051",
    show_default=True,
    envvar="OTA_REGISTRY",
    help="Registry address, or a comma-separated list of replicas (round robin). Env: OTA_REGISTRY.",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(path_type=Path),
    required=True,
    envvar="OTA_STATE",
    help="Agent state directory (TUF metadata, A/B slots). Env: OTA_STATE.",
)
@click.option(
    "--trusted-root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="OTA_TRUSTED_ROOT",
    help="TUF root.json provisioned at the factory (needed on first run). Env: OTA_TRUSTED_ROOT.",
)
@click.option(
    "--director-root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="OTA_DIRECTOR_ROOT",
    help="The director's root (director-root.json), provisioned with --trusted-root. Env: OTA_DIRECTOR_ROOT.",
)
@click.option(
    "--vehicle-id",
    default=None,
    envvar="OTA_VEHICLE_ID",
    help="This vehicle's id. Default: the name in its certificate (--cert); without one, vehicle-0001. "
    "Env: OTA_VEHICLE_ID.",
)
@click.option(
    "--hardware-id",
    default="generic-x86_64",
    show_default=True,
    envvar="OTA_HARDWARE_ID",
    help="Hardware id models are published for. Env: OTA_HARDWARE_ID.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    envvar="OTA_TAGS",
    callback=lambda _c, _p, v: _tags(v),
    help="KEY=VALUE this vehicle reports at check-in, e.g. fleet=berlin; `ota campaign create --tag` "
    "selects by them (repeatable). Env: OTA_TAGS (space-separated).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model names this vehicle runs (repeatable; none = all).",
)
@click.option("--once", is_flag=True, help="Check in once, install what is offered, and exit.")
@click.option("--interval", default=60.0, show_default=True, help="Seconds between check-ins.")
@click.option(
    "--serve",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="OTA_AGENT_SOCKET",
    help="Serve inference to local clients on this Unix socket. Env: OTA_AGENT_SOCKET.",
)
@click.option(
    "--health-window",
    default=30.0,
    show_default=True,
    help="Seconds a new model is watched (errors, latency) before it is confirmed; 0 = confirm at once.",
)
@click.option(
    "--memory-budget",
    type=float,
    envvar="OTA_MEMORY_BUDGET",
    help="MB the agent may use; a new model is loaded beside the served ones only when it fits. "
    "Default: the cgroup's memory limit (systemd MemoryMax=). Env: OTA_MEMORY_BUDGET.",
)
@tls_options("vehicle")
def run(
    address: str,
    state_dir: Path,
    trusted_root: Path | None,
    director_root: Path | None,
    vehicle_id: str | None,
    hardware_id: str,
    tags: tuple[str, ...],
    models: tuple[str, ...],
    once: bool,
    interval: float,
    socket_path: Path | None,
    health_window: float,
    memory_budget: float | None,
    tls_ca,
    tls_cert,
    tls_key,
    insecure: bool,
) -> None:
    """Check in with the registry, verify, install and report; repeat until stopped.

    Mutual TLS with the vehicle's certificate; its key also signs the version
    manifest, so even with --insecure give --ca/--cert/--key.

    SIGTERM or SIGINT stop it cleanly: the current step finishes (every step is
    journalled, so even a hard kill loses nothing), the socket is closed.
    """
    from vehicle_agent.agent import AgentConfig, AgentError, VehicleAgent
    from vehicle_agent.health import HealthPolicy
    from vehicle_agent.memory import tune_malloc

    identity = tls_files(tls_ca, tls_cert, tls_key, insecure, required=not insecure)
    vehicle_id = _vehicle_id(vehicle_id, tls_cert)
    _check_writable(state_dir)
    cfg = AgentConfig(
        registry=address,
        state_dir=state_dir,
        vehicle_id=vehicle_id,
        hardware_id=hardware_id,
        tags=tags,
        wanted_models=models,
        trusted_root=trusted_root,
        health=HealthPolicy(window_s=0.0 if once else health_window),
        director_root=director_root,
        identity=identity,
        insecure=insecure,
        memory_budget_mb=memory_budget,
    )
    tune_malloc()  # before the first session is loaded (memory.py)
    try:
        ag = VehicleAgent(cfg)
    except AgentError as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = ag.serve(socket_path) if socket_path else None
    if server is not None:
        click.echo(f"serving inference on unix:{socket_path}", err=True)
    failed = False

    def show(outcomes: list) -> None:
        nonlocal failed
        for o in outcomes:
            if o.status == "installed":
                click.echo(
                    f"{o.name}: installed {o.version} (was {o.from_version or 'nothing'}), "
                    f"{o.bytes_downloaded:,} B over the wire in {o.duration_s:.2f} s"
                    + (" — health window running" if o.state == "active" else "")
                )
            elif (
                o.name == "*" and o.status == "failed"
            ):  # the check-in itself: one line, cause and fix
                failed = True
                click.echo(
                    f"Error: {o.reason}" if once else f"{o.reason} (next try in {interval:g} s)",
                    err=True,
                )
            else:
                failed = True
                click.echo(f"{o.name}: {o.status}: {o.reason}", err=True)
        if not outcomes and once:
            click.echo(
                "up to date: "
                + (
                    ", ".join(f"{n} {r.version}" for n, r in ag.installed().items())
                    or "nothing installed"
                )
            )

    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"download {name}", total=total)
                bar.update(tasks[name], completed=done)

            if once:
                show(ag.update_once(progress))
            else:
                ag.run_forever(stop, interval_s=interval, on_outcomes=show, progress=progress)
    finally:
        if server is not None:
            server.stop(grace=2.0).wait()
        ag.close()
    if once and failed:
        raise SystemExit(1)


def _tags(values: tuple[str, ...]) -> tuple[str, ...]:
    bad = [v for v in values if "=" not in v or v.startswith("=")]
    if bad:
        raise click.BadParameter(
            f"{bad[0]!r} is not KEY=VALUE; write e.g. --tag fleet=berlin", param_hint="--tag"
        )
    return tuple(values)


def _vehicle_id(given: str | None, cert: Path | None) -> str:
    """The id the certificate names (the registry takes that one anyway); --vehicle-id must agree with it."""
    from otawire import tls

    if cert is None:
        return given or "vehicle-0001"
    try:
        ident = tls.identity_of(cert.read_bytes())
    except tls.TlsError as e:
        raise click.BadParameter(
            f"{cert}: {e}; give the vehicle certificate made by `ota certs vehicle`",
            param_hint="--cert",
        ) from None
    if ident.role != "vehicle":
        raise click.BadParameter(
            f"{cert} is a {ident.role} certificate; give the vehicle's own "
            f"(`ota certs vehicle ID --pki PKI`)",
            param_hint="--cert",
        )
    if given and given != ident.name:
        raise click.BadParameter(
            f"{given!r} differs from the name in {cert} ({ident.name!r}); "
            "drop --vehicle-id or use that vehicle's certificate",
            param_hint="--vehicle-id",
        )
    return ident.name


def _check_writable(state_dir: Path) -> None:
    """Fail before any network work when the state directory cannot take a journal write."""
    import tempfile

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".write-check-"):
            pass
    except OSError as e:
        raise click.BadParameter(
            f"{state_dir} is not writable ({e.strerror}); give a directory the agent may "
            "write (it keeps its journal and A/B slots there)",
            param_hint="--state",
        ) from None


@agent.command("infer")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    required=True,
    envvar="OTA_AGENT_SOCKET",
    help="The agent's inference socket. Env: OTA_AGENT_SOCKET.",
)
@click.option("--model", "name", required=True, help="Model name, e.g. squeezenet1.0.")
@click.option("--top", default=5, show_default=True)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the answer (an emulated or very slow host needs more).",
)
def infer(image: Path, socket_path: Path, name: str, top: int, timeout: float) -> None:
    """Ask a running agent to classify IMAGE, as the perception stack would."""
    import grpc

    from otawire.v1 import inference_pb2
    from vehicle_agent.serving import connect

    channel, stub = connect(socket_path)
    try:
        r = stub.Classify(
            inference_pb2.ClassifyRequest(
                model=name, frame=inference_pb2.Frame(image=image.read_bytes()), top_k=top
            ),
            timeout=timeout,
        )
    except grpc.RpcError as e:
        raise click.ClickException(f"{e.code().name}: {e.details()}") from None
    finally:
        channel.close()
    table = Table(
        "class",
        "label",
        "p",
        title=f"{r.served.model} {r.served.version} ({r.inference_ms:.1f} ms)",
    )
    for c in r.classes:
        table.add_row(str(c.class_id), c.label, f"{c.prob:.3f}")
    table_console().print(table)


@agent.command("status")
@click.option(
    "--state",
    "state_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    envvar="OTA_STATE",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(state_dir: Path, as_json: bool) -> None:
    """Show what each A/B slot holds, which one is active, and where each update stands."""
    from vehicle_agent.journal import Journal
    from vehicle_agent.slots import SlotStore

    state = SlotStore(state_dir).load()
    journal = Journal(state_dir)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "models": {
                        n: {
                            "active": m.active,
                            "slots": {s: r.__dict__ for s, r in m.slots.items()},
                            "update": _update_json(journal.get(n)),
                        }
                        for n, m in state.items()
                    },
                    "rejected": journal.data.rejected,
                },
                indent=1,
                default=str,
            )
        )
        return
    table = Table("model", "slot", "active", "version", "sha256", "bytes")
    for name, m in sorted(state.items()):
        for slot, rec in sorted(m.slots.items()):
            table.add_row(
                name,
                slot,
                "*" if slot == m.active else "",
                rec.version,
                rec.sha256[:16],
                f"{rec.length:,}",
            )
    table_console().print(table)
    updates = Table("model", "update", "version", "reason", title="Updates (journal)")
    for e in sorted(journal.entries(), key=lambda e: e.name):
        updates.add_row(e.name, str(e.state), e.job.version if e.job else "", e.reason)
    table_console().print(updates)
    for sha, why in sorted(journal.data.rejected.items()):
        click.echo(f"never again: {sha[:16]}…  {why}")


def _update_json(entry: Entry) -> dict[str, str]:
    """A journal entry as ``ota agent status --json`` shows it."""
    return {
        "state": str(entry.state),
        "version": entry.job.version if entry.job else "",
        "reason": entry.reason,
    }
