"""Serving statistics per model version, and the health window's verdict (pure).

After a swap the new version is on probation: every request it serves is
counted, failures (an ONNX Runtime error on a well-formed input, NaN or
infinite outputs) and latencies are recorded. ``HealthPolicy.judge`` turns
those figures into pending / ok / fail, comparing latency with what the
previous version did under the same load.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from vehicle_agent.engine import Verdict

WINDOW_SAMPLES = 4096  # latencies kept per version: bounded memory, enough for a p99


@dataclass
class ServingStats:
    """Requests served by one loaded model version (thread-safe)."""

    requests: int = 0
    errors: int = 0
    last_error: str = ""
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW_SAMPLES))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, ms: float, error: str = "") -> None:
        with self._lock:
            self.requests += 1
            if error:
                self.errors += 1
                self.last_error = error
            else:
                self.latencies_ms.append(ms)

    def percentile(self, q: float) -> float:
        with self._lock:
            values = list(self.latencies_ms)
        return float(np.percentile(values, q)) if values else 0.0

    def snapshot(self) -> tuple[int, int, str, float]:
        with self._lock:
            return self.requests, self.errors, self.last_error, len(self.latencies_ms)


@dataclass(frozen=True)
class HealthPolicy:
    """When is a freshly swapped-in model healthy?

    Any failed inference fails it at once (``max_errors``). After ``window_s``,
    if it served at least ``min_requests``, its p99 must stay within
    ``latency_factor`` × the previous version's p99 + ``latency_slack_ms``
    (the previous version's figure is only used when it had as many samples).
    With no traffic in the window the self-test, passed before the swap, stands.
    """

    window_s: float = 30.0
    max_errors: int = 0
    min_requests: int = 20
    latency_factor: float = 2.0
    latency_slack_ms: float = 5.0

    def judge(
        self, stats: ServingStats, baseline_p99_ms: float | None, elapsed_s: float
    ) -> Verdict:
        requests, errors, last_error, samples = stats.snapshot()
        if errors > self.max_errors:
            return Verdict(
                "fail", f"{errors} of {requests} requests failed in the health window: {last_error}"
            )
        if elapsed_s < self.window_s:
            return Verdict("pending")
        if samples >= self.min_requests and baseline_p99_ms:
            p99 = stats.percentile(99)
            limit = baseline_p99_ms * self.latency_factor + self.latency_slack_ms
            if p99 > limit:
                return Verdict(
                    "fail",
                    f"p99 latency {p99:.1f} ms over {samples} requests exceeds "
                    f"{limit:.1f} ms (previous version {baseline_p99_ms:.1f} ms)",
                )
        return Verdict("ok", f"{requests} requests, {errors} errors in {elapsed_s:.1f} s")
