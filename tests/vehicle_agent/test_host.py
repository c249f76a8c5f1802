"""ModelHost: a swap never touches a request in flight; concurrency is bounded."""

from __future__ import annotations

import threading
import time

import numpy as np

from modelpack.runtime import make_session, read_model_info
from modelpack.selftest import selftest_input
from vehicle_agent.runtime import LoadedModel, ModelHost


class CountingSession:
    """The real ORT session, with a count of the runs in progress (ORT is not ours to instrument)."""

    def __init__(self, session, hold_s: float = 0.0) -> None:
        self.session, self.hold_s = session, hold_s
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def run(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            out = self.session.run(*args, **kwargs)
            time.sleep(self.hold_s)
            return out
        finally:
            with self.lock:
                self.now -= 1


def test_at_most_two_inferences_run_at_once_whatever_the_clients(squeezenet_bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    session = CountingSession(make_session(squeezenet_bytes), hold_s=0.02)
    host = ModelHost(max_concurrent=2)
    host.swap("m", LoadedModel(session, info, "1", "sha"))  # type: ignore[arg-type]
    x = selftest_input(info, 0)
    threads = [
        threading.Thread(target=lambda: [host.run("m", x) for _ in range(3)]) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert session.peak == 2
    assert host.get("m").stats.requests == 18


def test_request_in_flight_finishes_on_the_model_it_started_on(squeezenet_bytes) -> None:
    info = read_model_info(squeezenet_bytes)
    old = LoadedModel(CountingSession(make_session(squeezenet_bytes), hold_s=0.3), info, "1", "old")  # type: ignore[arg-type]
    new = LoadedModel(make_session(squeezenet_bytes), info, "2", "new")
    host = ModelHost()
    host.swap("m", old)
    answered: list[str] = []
    x = selftest_input(info, 0)
    t = threading.Thread(target=lambda: answered.append(host.run("m", x)[1].version))
    t.start()
    while old.session.now == 0:  # the request is inside the old session
        time.sleep(0.001)
    host.swap("m", new)
    assert host.run("m", x)[1].version == "2"  # the next request: the new model, without waiting
    t.join()
    assert answered == ["1"]
    assert np.isfinite(host.run("m", x)[0]).all()
