"""The health window's verdict (pure): errors fail at once, latency is judged at the end."""

from __future__ import annotations

from vehicle_agent.health import HealthPolicy, ServingStats

POLICY = HealthPolicy(window_s=30.0, min_requests=20, latency_factor=2.0, latency_slack_ms=5.0)


def stats(latencies_ms: list[float], errors: int = 0) -> ServingStats:
    s = ServingStats()
    for ms in latencies_ms:
        s.record(ms)
    for _ in range(errors):
        s.record(1.0, "output has NaN or infinite values")
    return s


def test_one_failed_inference_fails_the_window_at_once() -> None:
    v = POLICY.judge(stats([10.0] * 50, errors=1), baseline_p99_ms=10.0, elapsed_s=1.0)
    assert v.state == "fail" and "1 of 51 requests failed" in v.reason and "NaN" in v.reason


def test_window_stays_pending_until_it_has_run() -> None:
    assert POLICY.judge(stats([10.0] * 50), baseline_p99_ms=10.0, elapsed_s=29.9).state == "pending"


def test_latency_regression_fails_at_the_end_of_the_window() -> None:
    v = POLICY.judge(
        stats([30.0] * 50), baseline_p99_ms=10.0, elapsed_s=30.0
    )  # limit 2×10 + 5 = 25 ms
    assert (
        v.state == "fail"
        and "p99 latency 30.0 ms" in v.reason
        and "previous version 10.0 ms" in v.reason
    )


def test_latency_within_the_limit_is_confirmed() -> None:
    assert POLICY.judge(stats([24.0] * 50), baseline_p99_ms=10.0, elapsed_s=30.0).state == "ok"


def test_too_few_requests_or_no_baseline_do_not_judge_latency() -> None:
    assert POLICY.judge(stats([100.0] * 5), baseline_p99_ms=10.0, elapsed_s=30.0).state == "ok"
    assert POLICY.judge(stats([100.0] * 50), baseline_p99_ms=None, elapsed_s=30.0).state == "ok"
