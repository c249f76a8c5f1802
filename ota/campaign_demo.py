"""The demo's campaign act: a small fleet takes a new version in two waves."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import onnx

from modelpack.runtime import read_model_info, set_model_info
from otawire import tls
from otawire.cli_out import table_console
from server.campaigns.cli import render_status
from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec
from server.campaigns.service import CampaignClient
from server.client import PublisherClient
from server.signing.keys import Keystore
from vehicle_agent.agent import AgentConfig, VehicleAgent


def run_campaign_demo(
    address: str,
    work: Path,
    trusted_root: Path,
    model: str,
    base: bytes,
    vehicles: int = 4,
    *,
    pki: Path,
    keys: Path,
) -> list[str]:
    """The demo's campaign act: a fleet on loopback takes a new version in two waves.

    ``vehicles`` real agents (TUF, A/B slots, ONNX Runtime self-test) check in and
    take the current release; then version ``+1`` of ``model`` is published and
    rolled out as canary (25%) then everyone, with a soak of 1 s between waves.
    Returns problems found (empty when the campaign behaved). ``pki`` holds the
    fleet CA (vehicle and publisher certificates are issued from it), ``keys``
    the offline keystore that signs the new version's targets.
    """
    agents = [
        VehicleAgent(
            AgentConfig(
                registry=address,
                state_dir=work / f"fleet-{i}",
                vehicle_id=f"fleet-car-{i}",
                trusted_root=trusted_root,
                wanted_models=(model,),
                tags=("fleet=demo",),
                director_root=trusted_root.parent / "director-root.json",
                identity=tls.ensure(pki, "vehicle", f"fleet-car-{i}"),
            )
        )
        for i in range(vehicles)
    ]
    publisher = tls.ensure(pki, "publisher", "ml-team")
    console = table_console()
    problems: list[str] = []
    try:
        for a in agents:
            a.update_once()
        current = {a.models[model].version for a in agents if model in a.models}
        console.print(
            f"  {vehicles} vehicles in fleet 'demo' run {model} {', '.join(sorted(current))}"
        )
        proto = onnx.load_model_from_string(base)
        info = read_model_info(proto)
        if info is None:
            raise ValueError(f"{model}: the base model carries no ModelInfo to version")
        next_version = _bump(max(current, key=lambda v: tuple(int(x) for x in v.split(".")[:3])))
        set_model_info(
            proto,
            dataclasses.replace(
                info, provenance=f"{info.provenance} | {next_version}: campaign demo"
            ),
        )
        with PublisherClient(address, tls_files=publisher) as pub:
            pub.upload(
                proto.SerializeToString(deterministic=True),
                model,
                next_version,
                keys=Keystore(keys),
            )
        spec = CampaignSpec(
            f"demo rollout of {next_version}",
            model,
            next_version,
            TargetSelection(tags=("fleet=demo",)),
            waves=(WaveSpec(25, 1.0, 1.0), WaveSpec(100, 1.0, 0.0)),
        )
        with CampaignClient(address, tls_files=publisher) as cc:
            st = cc.create(spec)
            console.print(
                f"  campaign {st.campaign_id}: {next_version} to {st.vehicles} vehicles, "
                f"waves 25% (canary, soak 1 s) → 100%"
            )
            for a in agents:
                a.update_once()
            console.print(render_status(cc.get(st.campaign_id)))
            time.sleep(1.1)  # the canary's soak: the registry's clock, real time here
            for a in agents:
                a.update_once()
            final = cc.get(st.campaign_id)
            console.print(render_status(final))
        if final.state != "completed":
            problems.append(
                f"campaign {final.campaign_id} ended {final.state}: {final.state_reason}"
            )
        stale = [a.config.vehicle_id for a in agents if a.models[model].version != next_version]
        if stale:
            problems.append(f"vehicles not on {next_version} after the campaign: {stale}")
    finally:
        for a in agents:
            a.close()
    return problems


def _bump(version: str) -> str:
    major, minor, patch = (int(x) for x in version.split("-")[0].split(".")[:3])
    return f"{major}.{minor}.{patch + 1}"
