"""The update engine on its own: real journal and slot files, no sockets, no ONNX Runtime.

A power cut is played by a plug-in raising ``PowerCut`` (a BaseException, so
nothing in the engine catches it) at a chosen call; the "restarted" agent is a
new engine over the same directory. Every state has a recovery test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vehicle_agent.disk import SlotDisk
from vehicle_agent.engine import EnginePolicy, StepFailed, UpdateEngine, Verdict
from vehicle_agent.journal import Entry, Job, Journal, State
from vehicle_agent.slots import SlotStore

NAME = "m"


class PowerCut(BaseException):
    pass


def make_job(data: bytes, version: str) -> Job:
    return Job(
        name=NAME,
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
        download_path=f"{NAME}/{version}",
    )


@dataclass
class World:
    """What the plug-ins see: the registry's files and the crash plan."""

    blobs: dict[str, bytes] = field(default_factory=dict)  # download_path -> bytes
    cut_at: str = ""  # plug-in call at which the power goes
    cut_after_bytes: int = 0  # for "fetch": bytes written before the cut
    fetch_calls: int = 0
    corrupt_next: int = 0  # fetches that deliver a flipped bit
    health: Verdict = Verdict("ok")

    def maybe_cut(self, point: str) -> None:
        if self.cut_at == point:
            self.cut_at = ""
            raise PowerCut(point)


class FakeFetcher:
    def __init__(self, world: World, downloads: Path) -> None:
        self.world, self.downloads = world, downloads

    def part(self, job: Job) -> Path:
        return self.downloads / f"{job.sha256}.{job.encoding}.part"

    def have(self, job: Job) -> int:
        return self.part(job).stat().st_size if self.part(job).exists() else 0

    def fetch(self, job: Job, progress=None) -> Path:
        p = self.part(job)
        have = self.have(job)
        if have == job.length:
            return p
        self.world.fetch_calls += 1
        data = bytearray(self.world.blobs[job.download_path][have:])
        if self.world.corrupt_next:
            self.world.corrupt_next -= 1
            data[len(data) // 2] ^= 1
        if self.world.cut_at == "fetch":
            with open(p, "ab") as f:
                f.write(data[: self.world.cut_after_bytes])
            self.world.maybe_cut("fetch")
        with open(p, "ab") as f:
            f.write(data)
        return p

    def discard(self, job: Job) -> None:
        self.part(job).unlink(missing_ok=True)


class Verifier:
    def verify(self, job: Job, path: Path) -> None:
        if hashlib.sha256(path.read_bytes()).hexdigest() != job.sha256:
            raise StepFailed("hash mismatch", status="attack_detected", retry=True)


class FakeRuntime:
    """Serves the bytes of a slot; a model whose bytes start with b"bad" fails its self-test."""

    def __init__(self, world: World, slots: SlotStore) -> None:
        self.world, self.slots = world, slots
        self.serving: dict[str, bytes] = {}
        for name, m in slots.load().items():  # what start-up loads: the active slot
            if m.active:
                self.serving[name] = slots.model_path(name, m.active).read_bytes()

    def prepare(self, job: Job, slot: str) -> bytes:
        data = self.slots.model_path(job.name, slot).read_bytes()
        if data.startswith(b"bad"):
            raise StepFailed("self-test failed: wrong answer", reject=True)
        self.world.maybe_cut("prepare")
        return data

    def swap(self, name: str, candidate: bytes) -> None:
        self.world.maybe_cut("swap")
        self.serving[name] = candidate

    def restore(self, name: str, slot: str | None) -> None:
        self.world.maybe_cut("restore")
        if slot is None:
            self.serving.pop(name, None)
        else:
            self.serving[name] = self.slots.model_path(name, slot).read_bytes()

    def health(self, name: str, since: float) -> Verdict:
        return self.world.health

    def release_previous(self, name: str) -> None:
        pass


class CuttingDisk(SlotDisk):
    def __init__(self, world: World, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.world = world

    def stage(self, job: Job, path: Path) -> str:
        slot = super().stage(job, path)
        self.world.maybe_cut("after-stage")
        return slot

    def activate(self, name: str, slot: str | None) -> None:
        self.world.maybe_cut("before-commit")
        super().activate(name, slot)
        self.world.maybe_cut("after-commit")


class Reporter:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []

    def report(self, entry: Entry, step: str) -> None:
        self.steps.append((entry.job.version if entry.job else "", step))


@dataclass
class Agent:
    engine: UpdateEngine
    runtime: FakeRuntime
    reporter: Reporter
    fetcher: FakeFetcher
    slots: SlotStore

    def served(self) -> bytes | None:
        return self.runtime.serving.get(NAME)


def boot(state: Path, world: World, policy: EnginePolicy = EnginePolicy()) -> Agent:
    """Start an agent over ``state``: load what slots.json says, then recover."""
    slots = SlotStore(state)
    fetcher = FakeFetcher(world, state / "downloads")
    disk = CuttingDisk(world, slots, state / "downloads", fetcher.have)
    runtime = FakeRuntime(world, slots)
    reporter = Reporter()
    engine = UpdateEngine(
        Journal(state), disk, fetcher, Verifier(), runtime, reporter, policy=policy
    )
    engine.recover()
    return Agent(engine, runtime, reporter, fetcher, slots)


V1, V2 = b"model-one" * 1000, b"model-two" * 1000


@pytest.fixture
def world() -> World:
    return World(blobs={f"{NAME}/1": V1, f"{NAME}/2": V2, f"{NAME}/bad": b"bad" + V2})


@pytest.fixture
def installed(tmp_path: Path, world: World) -> Agent:
    """An agent with V1 installed and confirmed."""
    a = boot(tmp_path, world)
    assert a.engine.install(make_job(V1, "1")).state == State.ACTIVE
    assert a.engine.poll(NAME).state == State.CONFIRMED
    return a


def crash_during_v2(tmp_path: Path, world: World, point: str) -> Agent:
    a = boot(tmp_path, world)
    world.cut_at = point
    with pytest.raises(PowerCut):
        a.engine.install(make_job(V2, "2"))
    return boot(tmp_path, world)


def state_of(tmp_path: Path) -> State:
    return Journal(tmp_path).get(NAME).state


# -- the happy path and its reports ------------------------------------------------------
def test_install_walks_every_state_and_reports_each_step(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    seen = []
    orig = installed.engine._put
    installed.engine._put = lambda e: (seen.append(e.state), orig(e))[1]  # type: ignore[method-assign]

    entry = installed.engine.install(make_job(V2, "2"), from_version="1")
    entry = installed.engine.poll(NAME)

    assert seen == [
        State.DOWNLOADING,
        State.VERIFYING,
        State.STAGED,
        State.ACTIVATING,
        State.ACTIVE,
        State.CONFIRMED,
    ]
    assert entry.previous_slot == "a" and entry.slot == "b" and entry.previous_version == "1"
    assert installed.served() == V2
    assert [s for v, s in installed.reporter.steps if v == "2"] == [
        "downloading",
        "installed",
        "confirmed",
    ]
    raw = json.loads((tmp_path / "journal.json").read_text())
    assert raw["entries"][NAME]["state"] == "confirmed"


# -- recovery, one test per state ----------------------------------------------------------
def test_crash_while_downloading_resumes_from_the_partial_file(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    world.cut_after_bytes = 4000
    a = crash_during_v2(tmp_path, world, "fetch")
    assert state_of(tmp_path) == State.DOWNLOADING and a.served() == V1
    assert a.fetcher.have(make_job(V2, "2")) == 4000

    entry = a.engine.install(make_job(V2, "2"))

    assert entry.state == State.ACTIVE and a.served() == V2
    assert world.fetch_calls == 3  # V1, the cut V2 attempt, one resume of the rest


def test_crash_after_staging_before_journal_is_not_downloaded_again(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    a = crash_during_v2(tmp_path, world, "after-stage")
    assert state_of(tmp_path) == State.VERIFYING and a.served() == V1
    calls = world.fetch_calls

    assert a.engine.install(make_job(V2, "2")).state == State.ACTIVE

    assert world.fetch_calls == calls and a.served() == V2


def test_crash_in_verifying_with_complete_download_verifies_without_fetching(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    a = boot(tmp_path, world)
    job = make_job(V2, "2")
    a.engine.journal.put(Entry(name=NAME).to(State.VERIFYING, job=job, previous_slot="a"))
    a.fetcher.part(job).write_bytes(V2)
    calls = world.fetch_calls

    a = boot(tmp_path, world)
    assert a.engine.install(job).state == State.ACTIVE
    assert world.fetch_calls == calls


def test_crash_in_staged_is_finished_at_start_without_network(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    a = crash_during_v2(tmp_path, world, "prepare")  # staged, self-test in progress

    assert state_of(tmp_path) == State.ACTIVE
    assert a.served() == V2 and a.slots.load()[NAME].active == "b"
    assert world.fetch_calls == 2


def test_staged_slot_damaged_before_restart_is_fetched_again(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    a = boot(tmp_path, world)
    world.cut_at = "prepare"
    with pytest.raises(PowerCut):
        a.engine.install(make_job(V2, "2"))
    a.slots.model_path(NAME, "b").write_bytes(V2[:-1])  # torn by the flash, not by us

    a = boot(tmp_path, world)

    assert state_of(tmp_path) == State.DOWNLOADING and a.served() == V1
    assert a.engine.install(make_job(V2, "2")).state == State.ACTIVE and a.served() == V2


def test_crash_in_activating_before_the_commit_reactivates(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    a = crash_during_v2(tmp_path, world, "before-commit")

    assert state_of(tmp_path) == State.ACTIVE and a.served() == V2
    assert a.slots.load()[NAME].active == "b"


def test_crash_in_activating_after_the_commit_is_active(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    a = crash_during_v2(tmp_path, world, "after-commit")  # slots.json switched, swap not done

    entry = Journal(tmp_path).get(NAME)
    assert entry.state == State.ACTIVE and entry.boots_in_active == 1
    assert a.served() == V2  # start-up loaded the committed slot
    assert ("2", "installed") in a.reporter.steps


def test_crash_in_health_window_restarts_it_then_rolls_back_a_crash_loop(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    installed.engine.install(make_job(V2, "2"))
    assert state_of(tmp_path) == State.ACTIVE

    a = boot(tmp_path, world)  # first unconfirmed restart: window starts over
    assert Journal(tmp_path).get(NAME).boots_in_active == 1 and a.served() == V2
    a = boot(tmp_path, world)
    assert Journal(tmp_path).get(NAME).boots_in_active == 2 and a.served() == V2
    a = boot(tmp_path, world)  # third: the new model is presumed to be what kills us

    entry = Journal(tmp_path).get(NAME)
    assert entry.state == State.ROLLED_BACK and "restarted 3 times" in entry.reason
    assert a.served() == V1 and a.slots.load()[NAME].active == "a"
    assert a.engine.journal.rejected(make_job(V2, "2").sha256)


def test_crash_during_rollback_finishes_it(installed: Agent, tmp_path: Path, world: World) -> None:
    installed.engine.install(make_job(V2, "2"))
    world.health = Verdict("fail", "NaN outputs")
    world.cut_at = "restore"  # slots.json already points back at a
    with pytest.raises(PowerCut):
        installed.engine.poll(NAME)

    a = boot(tmp_path, world)

    entry = Journal(tmp_path).get(NAME)
    assert entry.state == State.ROLLED_BACK and entry.reason == "NaN outputs"
    assert a.served() == V1


@pytest.mark.parametrize("final", [State.CONFIRMED, State.FAILED, State.ROLLED_BACK])
def test_terminal_states_recover_to_themselves(
    installed: Agent, tmp_path: Path, world: World, final: State
) -> None:
    job = {
        State.CONFIRMED: make_job(V2, "2"),
        State.FAILED: make_job(b"bad" + V2, "bad"),
        State.ROLLED_BACK: make_job(V2, "2"),
    }[final]
    world.health = Verdict("fail", "slow") if final == State.ROLLED_BACK else Verdict("ok")
    installed.engine.install(job)
    installed.engine.poll(NAME)
    before = (tmp_path / "journal.json").read_bytes()

    a = boot(tmp_path, world)

    assert state_of(tmp_path) == final and (tmp_path / "journal.json").read_bytes() == before
    assert a.served() == (V2 if final == State.CONFIRMED else V1)


# -- failures -------------------------------------------------------------------------------
def test_health_failure_rolls_back_and_never_retries_that_version(
    installed: Agent, world: World
) -> None:
    world.health = Verdict("fail", "3 of 40 requests failed")
    installed.engine.install(make_job(V2, "2"))

    entry = installed.engine.poll(NAME)

    assert entry.state == State.ROLLED_BACK and installed.served() == V1
    assert installed.slots.load()[NAME].active == "a"
    assert installed.engine.journal.rejected(make_job(V2, "2").sha256) == "3 of 40 requests failed"
    assert installed.reporter.steps[-1] == ("2", "rolled_back")


def test_failed_self_test_is_rejected_and_old_model_served(installed: Agent, world: World) -> None:
    entry = installed.engine.install(make_job(b"bad" + V2, "bad"))
    assert entry.state == State.FAILED and "self-test" in entry.reason
    assert installed.served() == V1 and installed.slots.load()[NAME].active == "a"


def test_flipped_bits_are_downloaded_again_then_called_an_attack(
    installed: Agent, world: World
) -> None:
    world.corrupt_next = 1
    assert installed.engine.install(make_job(V2, "2")).state == State.ACTIVE  # one flip: retried
    assert installed.engine.poll(NAME).state == State.CONFIRMED
    world.corrupt_next = 99
    world.blobs[f"{NAME}/3"] = V2 + b"3"
    entry = installed.engine.install(make_job(V2 + b"3", "3"))
    assert entry.state == State.FAILED and entry.status == "attack_detected"
    assert installed.served() == V2


def test_first_install_failing_health_serves_nothing_rather_than_a_bad_model(
    tmp_path: Path, world: World
) -> None:
    a = boot(tmp_path, world)
    world.health = Verdict("fail", "NaN outputs")
    a.engine.install(make_job(V1, "1"))
    assert a.engine.poll(NAME).state == State.ROLLED_BACK
    assert a.served() is None and a.slots.load()[NAME].active is None


def test_new_offer_supersedes_an_interrupted_download(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    world.cut_after_bytes = 100
    a = crash_during_v2(tmp_path, world, "fetch")
    world.blobs[f"{NAME}/3"] = V2 + b"3"
    entry = a.engine.install(make_job(V2 + b"3", "3"))
    assert entry.state == State.ACTIVE and a.served() == V2 + b"3"
    assert not a.fetcher.part(make_job(V2, "2")).exists()
    assert ("2", "failed") in a.reporter.steps


def test_corrupt_journal_is_moved_aside_and_serving_is_unaffected(
    installed: Agent, tmp_path: Path, world: World
) -> None:
    (tmp_path / "journal.json").write_text("{ not json")
    a = boot(tmp_path, world)
    assert a.served() == V1 and state_of(tmp_path) == State.IDLE
    assert list(tmp_path.glob("journal.corrupt-*"))
