"""What an emulation run records: each vehicle's real run and prediction, the calibration."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.scenario import Protocol, Scenario

HEADER_BYTES = 66  # Ethernet 14 + IPv4 20 + TCP 20 + timestamps option 12


@dataclass
class VehicleRun:
    """One real agent's run and the simulator's prediction for the same vehicle."""

    index: int
    link: str
    rate_mbit: float
    rtt_ms: float
    windows: list[tuple[float, float]]
    done_at: float | None = None  # last payload byte, s after the campaign start
    installed_at: float | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)  # the runner's JSON records
    app_bytes: int = 0
    sim_done: float = math.nan
    sim_bytes: float = math.nan
    sim_sessions: int = 0

    @property
    def finished_at(self) -> float:
        """``done_at`` of a run that finished (all of ``EmulationResult.finished()``)."""
        assert self.done_at is not None, f"vehicle {self.index} did not finish"
        return self.done_at

    @property
    def time_error(self) -> float:
        if self.done_at is None or not math.isfinite(self.sim_done):
            return math.nan
        return (self.sim_done - self.done_at) / self.done_at

    @property
    def bytes_error(self) -> float:
        return (self.sim_bytes - self.app_bytes) / self.app_bytes if self.app_bytes else math.nan


@dataclass(frozen=True)
class ServedPackage:
    """What the registry sends a vehicle that has no model yet."""

    nbytes: int
    encoding: str  # "full" or the codec of the registry's stand-alone encoding
    resumable: bool  # whether the agent resumes it across sessions


PACKAGES = ("served", "full")


@dataclass
class Calibration:
    """The agent's protocol constants, measured on the calibration vehicles of the same run."""

    setup_rtts: float  # first session: round trips before payload
    setup_s: float  # first session: seconds before payload that do not scale with the RTT (the agent's CPU)
    session_overhead_bytes: int  # first session: downlink besides the payload
    resume_setup_rtts: float  # the same for a resumed session
    resume_setup_s: float
    resume_overhead_bytes: int
    drain_s: float  # payload that still arrives after the link drops (the shaper's queue)
    rtt_ms: tuple[float, float]  # the two calibration links' RTTs
    rate_mbit: float
    cut_at_s: tuple[float, float]

    def protocol(self, base: Protocol) -> Protocol:
        return dataclasses.replace(
            base,
            setup_rtts=round(self.setup_rtts, 2),
            setup_s=round(self.setup_s, 3),
            resume_setup_rtts=round(self.resume_setup_rtts, 2),
            resume_setup_s=round(self.resume_setup_s, 3),
            session_overhead_bytes=self.session_overhead_bytes,
            resume_overhead_bytes=self.resume_overhead_bytes,
        )


@dataclass
class EmulationResult:
    scenario: Scenario
    package: ServedPackage
    calibration: Calibration
    vehicles: list[VehicleRun]
    wall_s: float
    rerun: list[VehicleRun] | None = None  # the same vehicles, a second real run: the noise floor

    def finished(self) -> list[VehicleRun]:
        return [v for v in self.vehicles if v.done_at is not None]

    def time_errors(self) -> np.ndarray:
        return np.array([v.time_error for v in self.finished()])

    def bytes_errors(self) -> np.ndarray:
        return np.array([v.bytes_error for v in self.finished()])

    def overall_time_error(self) -> float:
        """Error of the fleet's mean completion time."""
        fin = self.finished()
        if not fin:
            return math.nan
        emu = sum(v.finished_at for v in fin)
        return (sum(v.sim_done for v in fin) - emu) / emu

    def overall_bytes_error(self) -> float:
        fin = self.finished()
        emu = sum(v.app_bytes for v in fin)
        return (sum(v.sim_bytes for v in fin) - emu) / emu if emu else math.nan
