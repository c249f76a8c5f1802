"""``ota demo``: the whole path, end to end, on loopback, in one process tree.

Keys (root 2-of-3, root and targets offline) and a fleet PKI → registry with
online keys only, mutual TLS and the director → publish the real SqueezeNet
v1.0 (targets signed on the publisher's side) → release it (publishing alone
offers it to no vehicle) → a vehicle agent installs it over gRPC (signed
manifest, director and image repository agree, A/B slot, self-test) →
classifies real photos → a successor version is published (nothing offered)
→ released to that car → the agent updates → released to the fleet → a summary of what was
measured in this run. Every figure printed is measured here, except the
AlexNet-sized baseline (240 MB, from the SqueezeNet paper), which is labelled.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.table import Table

from otawire.cli_out import table_console

ALEXNET_BYTES = 240_000_000  # AlexNet's size in the SqueezeNet paper (240 MB, fp32)
CAT_FAMILY = {
    281,
    282,
    283,
    284,
    285,
    286,
    287,
}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, cougar, lynx
ESPRESSO = 967

# Piped into a log: no width limit, so no table is cut (otawire.cli_out).
console = table_console()
log = logging.getLogger(__name__)


@dataclass
class Timeline:
    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        console.print(f"[bold cyan]▶[/] {name}")
        t = time.perf_counter()
        yield
        self.steps.append((name, time.perf_counter() - t))


def _successor(base: bytes) -> tuple[bytes, str]:
    """The next version of the model and a one-line honest description."""
    try:
        from modelpack.lineage import demo_successor  # real retrained head, when available
    except ImportError:
        pass
    else:
        return demo_successor(base)
    import onnx

    from modelpack.runtime import read_model_info, set_model_info

    model = onnx.load_model_from_string(base)
    info = read_model_info(model)
    assert info is not None
    import dataclasses

    set_model_info(
        model,
        dataclasses.replace(
            info,
            provenance=info.provenance
            + " | 1.0.1: packaging-only change (metadata), weights identical",
        ),
    )
    return model.SerializeToString(
        deterministic=True
    ), "same weights, new package metadata (packaging-only change)"


def _check_predictions(results: dict[str, list]) -> list[str]:
    problems = []
    chelsea, coffee = results.get("chelsea.png"), results.get("coffee.png")
    if chelsea and chelsea[0].class_id not in CAT_FAMILY:
        problems.append(f"chelsea.png top-1 is {chelsea[0].label!r}, expected the cat family")
    if coffee and coffee[0].class_id != ESPRESSO:
        problems.append(f"coffee.png top-1 is {coffee[0].label!r}, expected 'espresso'")
    return problems


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep keys, registry data and agent state here (default: a temporary directory).",
)
@click.option(
    "--dashboard-listen",
    default="127.0.0.1:0",
    show_default=True,
    envvar="OTA_DASHBOARD_LISTEN",
    help="Serve the registry's web dashboard here during the demo ('' = off; port 0: any free one). "
    "Env: OTA_DASHBOARD_LISTEN.",
)
@click.option(
    "--keep-serving",
    is_flag=True,
    help="After the demo, keep the registry and its dashboard up until Ctrl-C (blocks).",
)
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save a PNG of the dashboard after the campaign (needs playwright and Debian's chromium).",
)
def demo(
    workdir: Path | None, dashboard_listen: str, keep_serving: bool, screenshot: Path | None
) -> None:
    """Run the whole path end to end on loopback and print what was measured."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="ota-demo-") as tmp:
            _run(Path(tmp), dashboard_listen, keep_serving, screenshot)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        _run(workdir, dashboard_listen, keep_serving, screenshot)


def _screenshot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("[data-campaign]").first.wait_for(timeout=30_000)
            page.locator("#audit tbody tr").first.wait_for(timeout=30_000)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def _run(
    work: Path,
    dashboard_listen: str = "",
    keep_serving: bool = False,
    screenshot: Path | None = None,
) -> None:
    from modelpack import zoo
    from modelpack.imaging import IMAGES_DIR
    from otawire import tls
    from server.audit import AuditLog
    from server.client import PublisherClient
    from server.dashboard.source import RegistrySource
    from server.dashboard.web import DashboardAuth, serve_dashboard
    from server.registry import Registry
    from server.service import create_server
    from server.signing.keys import Keystore
    from vehicle_agent.agent import AgentConfig, VehicleAgent

    tl = Timeline()
    images = [IMAGES_DIR / "chelsea.png", IMAGES_DIR / "coffee.png"]
    with tl.step("create TUF keys (ed25519; root 2-of-3, targets, snapshot, timestamp, director)"):
        offline = Keystore.init(work / "keys", force=True)
        online = offline.export_online(work / "registry-keys")
    console.print(
        f"  registry holds private keys for: {', '.join(r for r in ('root', 'targets', 'snapshot', 'timestamp', 'director') if online.has_private(r))}"
    )
    with tl.step("create the fleet PKI (CA, registry, publisher and vehicle certificates)"):
        pki = work / "pki"
        if pki.exists():
            import shutil

            shutil.rmtree(pki)
        tls.make_ca(pki)
        server_tls = tls.issue(pki, "server", "registry")
        publisher_tls = tls.issue(pki, "publisher", "ml-team")
        vehicle_tls = tls.issue(pki, "vehicle", "demo-car-1")
    with tl.step("start registry on loopback (mutual TLS, director; SQLite + blob store)"):
        registry = Registry.open(
            work / "registry", work / "registry-keys", ca_pem=(pki / tls.CA_CERT).read_bytes()
        )
        audit = AuditLog(registry.store)
        server, port = create_server(registry, "127.0.0.1:0", tls_files=server_tls, audit=audit)
    address = f"127.0.0.1:{port}"
    console.print(f"  registry at {address} (TLS, client certificates required), data in {work}")
    dash = None
    if dashboard_listen:
        dash = serve_dashboard(
            dashboard_listen, RegistrySource(registry, audit), DashboardAuth.with_fresh_token()
        )
        console.print(f"  dashboard (read-only) at {dash.url}")
    updates = []
    try:
        with tl.step("build squeezenet1.0 ONNX from the real Deep Compression weights"):
            v1 = zoo.build("squeezenet1.0")
        with PublisherClient(address, tls_files=publisher_tls) as pub:
            with tl.step(
                "publish squeezenet1.0 1.0.0 (targets signed offline by the publisher, then uploaded)"
            ):
                pub.upload(v1, "squeezenet1.0", "1.0.0", keys=offline)
            with tl.step(
                "release squeezenet1.0 1.0.0 to the fleet (publishing alone offers it to no vehicle)"
            ):
                pub.release("squeezenet1.0", "1.0.0", "fleet", reason="demo: first install")
            agent = VehicleAgent(
                AgentConfig(
                    registry=address,
                    state_dir=work / "vehicle",
                    vehicle_id="demo-car-1",
                    trusted_root=work / "keys" / "root.json",
                    director_root=work / "keys" / "director-root.json",
                    identity=vehicle_tls,
                    wanted_models=("squeezenet1.0",),
                )
            )
            try:
                with tl.step(
                    "vehicle: signed manifest, director + image repo agree, install 1.0.0 into slot A, self-test, switch"
                ):
                    outcomes = agent.update_once()
                updates += outcomes
                _require_installed(outcomes)
                with tl.step("vehicle: classify real photos with the active model"):
                    results = {p.name: agent.classify("squeezenet1.0", p, 3) for p in images}
                _print_predictions("1.0.0", results)
                problems = _check_predictions(results)
                with tl.step("build the successor version"):
                    v2, how = _successor(v1)
                console.print(f"  successor: {how}")
                with tl.step("publish squeezenet1.0 1.0.1"):
                    pub.upload(v2, "squeezenet1.0", "1.0.1", keys=offline)
                with tl.step(
                    "vehicle: check in (1.0.1 is published, not released: nothing offered)"
                ):
                    early = agent.update_once()
                if early:
                    problems.append(
                        f"an unreleased version was offered: {[(o.name, o.version) for o in early]}"
                    )
                with tl.step(
                    "release squeezenet1.0 1.0.1 to demo-car-1 (`ota release … --vehicle`)"
                ):
                    pub.release(
                        "squeezenet1.0", "1.0.1", "vehicle:demo-car-1", reason="demo: canary car"
                    )
                with tl.step("vehicle: update 1.0.0 → 1.0.1 into slot B, self-test, switch"):
                    outcomes = agent.update_once()
                updates += outcomes
                _require_installed(outcomes)
                with tl.step("vehicle: classify again with 1.0.1"):
                    results2 = {p.name: agent.classify("squeezenet1.0", p, 3) for p in images}
                _print_predictions("1.0.1", results2)
                problems += _check_predictions(results2)
                with tl.step("release squeezenet1.0 1.0.1 to the fleet (the canary car is fine)"):
                    pub.release(
                        "squeezenet1.0", "1.0.1", "fleet", reason="demo: canary car healthy"
                    )
                with tl.step("vehicle: check in again (nothing new expected)"):
                    again = agent.update_once()
                if again:
                    problems.append(
                        f"a third check-in offered {[(o.name, o.version) for o in again]}"
                    )
            finally:
                agent.close()
            with tl.step(
                "fleet: 4 vehicles, a two-wave campaign (canary 25% → 100%) for the next version"
            ):
                from ota.campaign_demo import run_campaign_demo

                problems += run_campaign_demo(
                    address,
                    work,
                    work / "keys" / "root.json",
                    "squeezenet1.0",
                    v2,
                    pki=pki,
                    keys=work / "keys",
                )
        reports = registry.store.list_reports("demo-car-1")
        if dash is not None and screenshot is not None:
            _screenshot(dash.url, screenshot)
            console.print(f"  dashboard screenshot: {screenshot}")
        if dash is not None and keep_serving:
            console.print(f"  serving until Ctrl-C: registry {address}, dashboard {dash.url}")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
    finally:
        if dash is not None:
            dash.stop()
        server.stop(None)
    _print_summary(tl, updates, len(reports))
    if problems:
        for p in problems:
            console.print(f"[bold red]✗ {p}")
        raise SystemExit(1)
    console.print(
        "[bold green]✓ demo passed: real model installed, verified, run and updated over gRPC"
    )


def _require_installed(outcomes: list) -> None:
    bad = [o for o in outcomes if o.status != "installed"]
    if bad or not outcomes:
        reason = (
            "; ".join(f"{o.name}: {o.status}: {o.reason}" for o in bad) or "nothing was offered"
        )
        raise click.ClickException(f"update failed: {reason}")


def _print_predictions(version: str, results: dict[str, list]) -> None:
    table = Table("image", "top-1", "p", "then", title=f"squeezenet1.0 {version} on the vehicle")
    for image, preds in results.items():
        table.add_row(
            image,
            f"{preds[0].class_id} {preds[0].label}",
            f"{preds[0].prob:.3f}",
            ", ".join(f"{p.label} ({p.prob:.2f})" for p in preds[1:]),
        )
    console.print(table)


def _print_summary(tl: Timeline, updates: list, n_reports: int) -> None:
    steps = Table("step", "time", title="Timeline (measured in this run)")
    for name, secs in tl.steps:
        steps.add_row(name, f"{secs * 1000:,.0f} ms")
    console.print(steps)
    table = Table(
        "update", "encoding", "on the wire", "AlexNet-sized*", "smaller by", "time", title="Updates"
    )
    for o in updates:
        saving = ALEXNET_BYTES / o.bytes_downloaded if o.bytes_downloaded else float("inf")
        table.add_row(
            f"{o.from_version or '∅'} → {o.version}",
            o.encoding,
            f"{o.bytes_downloaded:,} B",
            f"{ALEXNET_BYTES / 1e6:.0f} MB",
            f"{saving:,.0f}×",
            f"{o.duration_s * 1000:,.0f} ms",
        )
    console.print(table)
    console.print(
        "  * 240 MB: AlexNet's size from the SqueezeNet paper, for comparison; not transferred here."
    )
    console.print(f"  registry received {n_reports} install reports from the vehicle")
