"""The agent's protocol constants, measured by four calibration agents run beside the fleet.

They run in the same run as the vehicles being checked, so that both see the same
load on the machine (a loaded machine slows the agent's CPU-bound steps: TLS,
signature checks, the ONNX self-test). Two links of the same rate and different
RTTs (300 ms and 50 ms) split a session's set-up into seconds that do not scale
with the RTT (the agent's CPU) and round trips; on each, one agent is always
reachable (its one session gives the first-session constants and the metadata
bytes) and one loses its link once mid-download and, told to give up at the
first failed retry, opens a second session when the link is back (the resumed
session's constants; the bytes of its first session beyond what had flowed by
the cut give the shaper's drain).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from otawire.constants import MESSAGE_BYTES
from simulator.emulate.records import HEADER_BYTES, Calibration, ServedPackage, VehicleRun

CALIB_RATE_MBIT = 0.5  # slow enough that the served package (~0.5 MB) flows for ~9 s
CALIB_RTTS_MS = (300.0, 50.0)
# Inside the first session's payload on each link: set-up over mutual TLS with the signed
# manifest and both repositories' metadata takes about 14-26 round trips plus the agent's CPU.
CALIB_CUTS_S = (11.0, 6.0)


def calibration_vehicles(package: str, model_bytes: int) -> tuple[list[VehicleRun], list[int]]:
    """The four calibration vehicles (links and windows) and their retry limits (0: the agent's own)."""
    # Long enough for a cut vehicle's second session to fetch the whole file when it is served.
    horizon = (
        90.0 if package == "served" else 90.0 + 1.3 * model_bytes * 8 / (CALIB_RATE_MBIT * 1e6)
    )
    out = []
    for rtt, cut in zip(CALIB_RTTS_MS, CALIB_CUTS_S, strict=False):
        out.append(VehicleRun(0, f"calib_{rtt:g}ms", CALIB_RATE_MBIT, rtt, [(0.0, horizon)]))
        out.append(
            VehicleRun(
                0, f"calib_{rtt:g}ms_cut", CALIB_RATE_MBIT, rtt, [(0.0, cut), (cut + 1.0, horizon)]
            )
        )
    return out, [0, 1, 0, 1]


def _session_bytes(sess: dict[str, Any]) -> int:
    b0, p0 = sess["rx_start"]
    b1, p1 = sess["rx_end"]
    return (b1 - b0) - HEADER_BYTES * (p1 - p0)


def _setup_s(sess: dict[str, Any], rate: float, payload: int) -> float:
    """Time before the payload flowed: the first whole stream chunk, less its transfer time."""
    if sess.get("first_byte") is None:
        raise RuntimeError(f"calibration session delivered no payload chunk: {sess}")
    return float(sess["first_byte"]) - float(sess["start"]) - min(MESSAGE_BYTES, payload) / rate


def _split(times: dict[float, list[float]]) -> tuple[float, float]:
    """Seconds = fixed + rtts x RTT, from set-up times on two RTTs: (fixed, rtts)."""
    (r1, t1), (r2, t2) = (
        (r / 1000, statistics.fmean(ts)) for r, ts in sorted(times.items(), reverse=True)
    )
    rtts = max(0.0, (t1 - t2) / (r1 - r2))
    return max(0.0, t1 - rtts * r1), rtts


def fit_setup(runs: list[VehicleRun], served: ServedPackage) -> tuple[float, float] | None:
    """Set-up = fixed seconds + round trips x RTT, least squares over every first session of the run.

    Uses each session whose first payload message arrived inside the window it
    started in (a set-up not cut by the link): the calibration agents and the
    fleet's alike, two parameters for all of them. On a loaded machine the
    agent's CPU time varies from minute to minute; fitted on the sessions of the
    same run across four RTTs (40-600 ms) it follows the load the fleet saw.
    """
    from simulator.scenario import LinkProfile

    xs, ys = [], []
    for v in runs:
        if not v.sessions or v.sessions[0].get("first_byte") is None:
            continue
        s0 = v.sessions[0]
        start, first = float(s0["start"]), float(s0["first_byte"])
        if not any(a - 0.05 <= start and first <= b for a, b in v.windows):
            continue
        rate = LinkProfile("v", v.rate_mbit, 0.0).goodput_bytes_per_s()
        xs.append(v.rtt_ms / 1000)
        ys.append(_setup_s(s0, rate, served.nbytes))
    if len(set(xs)) < 2:
        return None
    a = np.vstack([np.ones(len(xs)), np.asarray(xs)]).T
    fixed, rtts = np.linalg.lstsq(a, np.asarray(ys), rcond=None)[0]
    if rtts < 0:  # no RTT dependence visible: all of it fixed
        return float(np.mean(ys)), 0.0
    if fixed < 0:
        return 0.0, float(np.dot(xs, ys) / np.dot(xs, xs))
    return float(fixed), float(rtts)


def calibrate(runs: list[VehicleRun], served: ServedPackage) -> Calibration:
    """The protocol constants from the calibration vehicles' sessions (see the module's doc)."""
    from simulator.scenario import LinkProfile

    rate = LinkProfile("calib", CALIB_RATE_MBIT, 0.0).goodput_bytes_per_s()
    for v in runs:
        if v.done_at is None or ("cut" in v.link and len(v.sessions) < 2):
            raise RuntimeError(
                f"calibration agent {v.link} did not behave as planned: {v.sessions}"
            )
    first: dict[float, list[float]] = {r: [] for r in CALIB_RTTS_MS}
    resumed: dict[float, list[float]] = {r: [] for r in CALIB_RTTS_MS}
    overheads, resume_overheads = [], []
    whole_300 = next(v for v in runs if v.link == f"calib_{CALIB_RTTS_MS[0]:g}ms")
    for v in runs:
        s0 = v.sessions[0]
        if "cut" not in v.link:
            first[v.rtt_ms].append(_setup_s(s0, rate, served.nbytes))
            overheads.append(_session_bytes(s0) - served.nbytes)
        else:
            last = v.sessions[-1]
            payload2 = int(last.get("bytes_downloaded") or 0)
            resumed[v.rtt_ms].append(_setup_s(last, rate, payload2))
            resume_overheads.append(_session_bytes(last) - payload2)
    setup_s, setup_rtts = _split(first)
    resume_s, resume_rtts = _split(resumed)
    overhead = int(statistics.fmean(overheads))
    # The drain: what the 300 ms cut vehicle's first session received beyond what had flowed by the cut.
    cut = next(v for v in runs if v.link == f"calib_{CALIB_RTTS_MS[0]:g}ms_cut")
    setup1 = _setup_s(whole_300.sessions[0], rate, served.nbytes)
    flowed = max(0.0, CALIB_CUTS_S[0] - setup1) * rate
    drained = _session_bytes(cut.sessions[0]) - overhead - flowed
    return Calibration(
        setup_rtts=setup_rtts,
        setup_s=setup_s,
        session_overhead_bytes=max(0, overhead),
        resume_setup_rtts=resume_rtts,
        resume_setup_s=resume_s,
        resume_overhead_bytes=max(0, int(statistics.fmean(resume_overheads))),
        drain_s=max(0.0, drained / rate),
        rtt_ms=CALIB_RTTS_MS,
        rate_mbit=CALIB_RATE_MBIT,
        cut_at_s=CALIB_CUTS_S,
    )
