"""Fault campaign for the vehicle agent: power cuts (kill -9) during updates, and link faults.

Power cuts: a real registry on loopback and a real agent process
(``bench/faults_agent.py``). Each update publishes a new version (its delta
precomputed, so the agent fetches the delta and rebuilds the model), then the
agent is killed with SIGKILL at a random instant, the state directory is
inspected as it was left, the agent is restarted, and killed once more while
it recovers and resumes the same update. After every kill the restarted agent
must serve a complete, verified model: the old version or the new one, whose
bytes hash to the signed value (anything else is a *torn* state); after the
last kill of an update it must converge: serve the new version, confirmed.

Half the first kills fall uniformly over the whole update; the other half wait
for a given journal state (downloading, verifying = the delta rebuild and hash
check, staged, activating = the slot switch, active = the health window) and
strike 0-5 ms after it appears, so the short phases get hit too. The journal
state found after each kill is tallied. What SIGKILL does not show: the loss of data still in the page cache
at a real power cut; every write that matters is fsynced (see docs/agent.md).

Link faults: the agent installs through ``FaultyLink`` (a breaking TCP relay):
drops every N KB, one flipped bit at a random offset, a stalled stream.

    python bench/faults.py --trials 20          # CI default (make faults)
    TRIALS=500 make faults                       # the full campaign
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelpack import zoo
from otawire import tls
from server.registry import Registry
from server.service import create_server
from server.signing.keys import Keystore
from testkit.variants import successor

NAME = "squeezenet1.0"
TERMINAL_STATES = ("none", "idle", "confirmed", "failed", "rolled_back")
KILLS_PER_UPDATE = 2  # the second kill lands in the recovery or the resumed update
PHASES = (
    "anywhere",
    "downloading",
    "anywhere",
    "verifying",
    "anywhere",
    "staged",
    "anywhere",
    "activating",
    "anywhere",
    "active",
)


@dataclass
class Campaign:
    kills: int = 0
    updates: int = 0
    torn: int = 0
    converged: int = 0
    served_old: int = 0
    served_new: int = 0
    found_state: Counter = field(default_factory=Counter)
    recovery_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    served_kinds: Counter = field(
        default_factory=Counter
    )  # registry downloads by kind (target, encoding, metadata)


class AgentProcess:
    def __init__(self, registry: str, state: Path, root: Path, log_path: Path) -> None:
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "faults_agent.py"),
                "--registry",
                registry,
                "--state",
                str(state),
                "--root",
                str(root),
                "--pki",
                str(root.parent.parent / "pki"),
                "--gate",
                str(state.parent / "gate"),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=REPO,
        )
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.events.put(json.loads(line))
        self.events.put({"event": "exit", "rc": self.proc.wait()})

    def wait(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                e = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {event!r} from the agent in {timeout:.0f} s") from None
            if e["event"] == event:
                return e
            if e["event"] == "exit":
                raise RuntimeError(f"agent exited with {e['rc']} while waiting for {event!r}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def journal_state(state: Path) -> str:
    try:
        raw = json.loads((state / "journal.json").read_text())
        return raw["entries"][NAME]["state"]
    except (OSError, ValueError, KeyError):
        return "none"


def inspect(state: Path, published: dict[str, str]) -> str:
    """What a restart would find, checked offline: '' if sound, else what is torn."""
    import hashlib

    try:
        slots = json.loads((state / "slots.json").read_text())[NAME]
        if (state / "journal.json").exists():
            json.loads((state / "journal.json").read_text())
    except (OSError, ValueError, KeyError) as e:
        return f"state files unreadable: {e}"
    active = slots.get("active")
    rec = slots["slots"].get(active or "")
    if rec is None:
        return f"no active slot ({active!r})"
    sha = hashlib.sha256((state / "slots" / NAME / active / "model.onnx").read_bytes()).hexdigest()
    if sha != rec["sha256"] or sha not in published:
        return f"active slot {active} holds {sha[:12]}, record says {rec['sha256'][:12]}"
    return ""


def _pki(pki: Path) -> tls.TlsFiles:
    """A fresh fleet PKI under ``pki``; the registry's server certificate (security, issue 4)."""
    if pki.exists():
        shutil.rmtree(pki)
    tls.make_ca(pki)
    return tls.issue(pki, "server", "registry")


def power_cuts(trials: int, work: Path, seed: int) -> tuple[Campaign, float]:
    rng = random.Random(seed)
    Keystore.init(work / "keys", force=True)
    work.mkdir(parents=True, exist_ok=True)
    server_tls = _pki(work / "pki")
    registry = Registry.open(work / "registry", work / "keys", ca_pem=server_tls.ca.read_bytes())
    server, port = create_server(registry, "127.0.0.1:0", tls_files=server_tls)
    address, state, root = f"127.0.0.1:{port}", work / "state", work / "keys" / "root.json"
    base = zoo.build(NAME)
    published: dict[str, str] = {}

    def publish(n: int) -> tuple[str, str]:
        rec = registry.publish_bytes(NAME, f"1.0.{n}", base if n == 0 else successor(base, n))
        registry.release(NAME, rec.version)
        published[rec.sha256] = rec.version
        return rec.version, rec.sha256

    c = Campaign()
    try:
        current = publish(0)
        gate = work / "gate"
        gate.touch()
        agent = AgentProcess(address, state, root, work / "agent.log")
        agent.wait("up", 60)
        agent.wait("idle", 60)

        def start_update(n: int) -> tuple[str, str]:
            """Publish version n (signed, encodings precomputed), then let the agent check in."""
            gate.unlink(missing_ok=True)
            time.sleep(0.06)  # a check-in already under way finishes
            version = publish(n)
            gate.touch()
            while journal_state(state) in TERMINAL_STATES:
                time.sleep(0.0005)
            return version

        # Calibrate: how long does one update take here, from the journal's first step to idle?
        current = start_update(1)
        t = time.monotonic()
        agent.wait("idle", 60)
        t_update = time.monotonic() - t
        for trial in range(trials):
            phase = PHASES[trial % len(PHASES)]
            first = trial % KILLS_PER_UPDATE == 0
            last = trial % KILLS_PER_UPDATE == KILLS_PER_UPDATE - 1 or trial == trials - 1
            if first:
                new = start_update(trial // KILLS_PER_UPDATE + 2)
                c.updates += 1
            # A second kill strikes the restarted agent while it recovers and resumes the same update.
            if not first:
                time.sleep(rng.uniform(0, t_update / 2))  # resuming is shorter than a whole update
            elif phase == "anywhere":
                time.sleep(rng.uniform(0, t_update))
            else:
                deadline = time.monotonic() + 3 * t_update + 2
                while journal_state(state) != phase and time.monotonic() < deadline:
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0, 0.005))
            agent.kill()
            c.kills += 1
            found = journal_state(state)
            c.found_state[found] += 1
            torn = inspect(state, published)
            t = time.monotonic()
            agent = AgentProcess(address, state, root, work / "agent.log")
            try:
                up = agent.wait("up", 60)
            except (TimeoutError, RuntimeError) as e:
                torn = torn or f"agent did not come back: {e}"
                up = {"served": {}}
            c.recovery_s.append(time.monotonic() - t)
            version, sha = up["served"].get(NAME, ["", ""])
            if not torn and (version, sha) not in (current, new):
                torn = (
                    f"serves {version} {sha[:12]} after the kill, expected {current[0]} or {new[0]}"
                )
            if torn:
                c.torn += 1
                c.problems.append(f"trial {trial} ({phase}, found {found}): {torn}")
            else:
                c.served_old += (version, sha) == current
                c.served_new += (version, sha) == new
            if not last:
                continue
            try:
                idle = agent.wait("idle", 60)
                if idle["served"].get(NAME) == list(new):
                    c.converged += 1
                else:
                    c.problems.append(f"update {new[0]}: settled on {idle['served']}, not {new[0]}")
            except (TimeoutError, RuntimeError) as e:
                c.problems.append(f"update {new[0]}: did not converge: {e}")
            current = new
        agent.kill()
        c.served_kinds.update(d.kind for d in registry.downloads)
    finally:
        server.stop(None)
        registry.store.close()
    return c, t_update


class Fault(TypedDict, total=False):
    """One link fault: FaultyLink's keyword arguments."""

    drop_every: int
    flip_at: int
    stall_after: int


def link_faults(work: Path, seed: int, full: bool) -> list[dict]:
    """Install SqueezeNet through each kind of broken link; count detections."""
    from testkit.faultlink import FaultyLink
    from vehicle_agent.agent import AgentConfig, VehicleAgent
    from vehicle_agent.download import RetryPolicy
    from vehicle_agent.transport import TransportConfig

    rng = random.Random(seed)
    Keystore.init(work / "lkeys", force=True)
    # Plain text, explicitly: over TLS a flipped bit breaks the record's MAC (a drop), and
    # this campaign is about the agent's own checks (signed hash, resume, stall watchdog).
    pki = work / "lpki"
    _pki(pki)
    registry = Registry.open(
        work / "lregistry", work / "lkeys", ca_pem=(pki / "ca.pem").read_bytes()
    )
    server, port = create_server(registry, "127.0.0.1:0", insecure=True)
    base = zoo.build(NAME)
    rec = registry.publish_bytes(NAME, "1.0.0", base)
    registry.release(NAME, "1.0.0")
    registry.store.put_encodings(
        NAME, "1.0.0", []
    )  # the full 5 MB file: the longest transfer to break
    flips, stalls = (5, 3) if full else (1, 1)
    scenarios: list[tuple[str, Fault]] = (
        [("drop every 64 KB", {"drop_every": 64 * 1024})] if full else []
    )
    scenarios += [("drop every 256 KB", {"drop_every": 256 * 1024})]
    scenarios += [
        (f"bit flip at byte {o:,}", {"flip_at": o})
        for o in sorted(rng.sample(range(500_000, len(base)), flips))
    ]
    scenarios += [
        (f"stall after {o:,} B", {"stall_after": o})
        for o in sorted(rng.sample(range(100_000, len(base)), stalls))
    ]
    rows = []
    try:
        for i, (what, kw) in enumerate(scenarios):
            with FaultyLink(f"127.0.0.1:{port}", **kw) as link:
                agent = VehicleAgent(
                    AgentConfig(
                        registry=link.address,
                        state_dir=work / f"link{i}",
                        vehicle_id=f"link-{i}",
                        trusted_root=work / "lkeys" / "root.json",
                        director_root=work / "lkeys" / "director-root.json",
                        identity=tls.ensure(pki, "vehicle", f"link-{i}"),
                        insecure=True,
                        retry=RetryPolicy(attempts=4, base_s=0.02, cap_s=0.2),
                        transport=TransportConfig(rpc_deadline_s=5.0, stall_timeout_s=1.0),
                    )
                )
                t = time.monotonic()
                outcomes = []
                for _ in range(10):
                    outcomes += agent.update_once()
                    if any(o.status == "installed" for o in outcomes):
                        break
                took = time.monotonic() - t
                ok = [o for o in outcomes if o.status == "installed"]
                served = agent.models.get(NAME)
                rows.append(
                    {
                        "fault": what,
                        "injected": link.stats.drops + link.stats.flips + link.stats.stalls,
                        "hash_mismatches": sum(o.verify_failures for o in outcomes),
                        "completed": bool(ok),
                        "verified": bool(
                            served
                            and served.sha256 == rec.sha256
                            and (active := agent.slots.load()[NAME].active) is not None
                            and agent.slots.verify(NAME, active)
                        ),
                        "wire_bytes": sum(o.bytes_downloaded for o in outcomes),
                        "seconds": round(took, 2),
                        "check_ins": len(outcomes)
                        if not ok
                        else 1 + sum(o.status != "installed" for o in outcomes),
                    }
                )
                agent.close()
    finally:
        server.stop(None)
        registry.store.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", 20)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 1)))
    ap.add_argument(
        "--part",
        choices=("all", "power", "link"),
        default="all",
        help="both parts (default); the link part runs more scenarios when --trials >= 100",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ota-faults-") as tmp:
        c, t_update = (
            power_cuts(args.trials, Path(tmp), args.seed)
            if args.part != "link"
            else (Campaign(), 0.0)
        )
        rows = (
            link_faults(Path(tmp), args.seed, full=args.trials >= 100)
            if args.part != "power"
            else []
        )
    took = time.monotonic() - t0
    if args.part != "link":
        print_power_cuts(c, args, t_update)
    if rows:
        print_link_faults(rows)
    print(f"\ncampaign took {took:.1f} s")
    (out_dir / "faults.json").write_text(
        json.dumps(
            {
                "trials": args.trials,
                "seed": args.seed,
                "kills": c.kills,
                "updates": c.updates,
                "torn": c.torn,
                "converged": c.converged,
                "served_old": c.served_old,
                "served_new": c.served_new,
                "found_state": dict(c.found_state),
                "recovery_s": c.recovery_s,
                "update_s": t_update,
                "problems": c.problems,
                "link": rows,
            },
            indent=1,
        )
    )
    bad = (
        c.torn
        or c.converged != c.updates
        or any(not (r["completed"] and r["verified"]) for r in rows)
    )
    return 1 if bad else 0


def print_power_cuts(c: Campaign, args: argparse.Namespace, t_update: float) -> None:
    print(
        f"\n## Power cuts: kill -9 during updates ({args.trials} trials, seed {args.seed}, one update ≈ {t_update * 1000:.0f} ms)\n"
    )
    print(
        "| kills | updates | torn states | converged updates | served old after kill | served new after kill | restart → serving (median) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    med = statistics.median(c.recovery_s) if c.recovery_s else float("nan")
    print(
        f"| {c.kills} | {c.updates} | {c.torn} | {c.converged} of {c.updates} | {c.served_old} | {c.served_new} | {med * 1000:.0f} ms |"
    )
    print(
        "\njournal state found after the kill: "
        + ", ".join(f"{k} {v}" for k, v in sorted(c.found_state.items()))
        + " (verifying includes the delta rebuild; activating is the slot switch)"
    )
    print(
        "registry streams served: "
        + ", ".join(f"{k} {v}" for k, v in sorted(c.served_kinds.items()))
    )
    for p in c.problems:
        print(f"  ! {p}")


def print_link_faults(rows: list[dict]) -> None:
    print("\n## Link faults (SqueezeNet 1.0, 5.0 MB, through a breaking TCP relay)\n")
    print(
        "| fault | faults injected | hash mismatches caught | completed | installed bytes verify | over the wire | time |"
    )
    print("|---|---:|---:|:-:|:-:|---:|---:|")
    for r in rows:
        print(
            f"| {r['fault']} | {r['injected']} | {r['hash_mismatches']} | {'yes' if r['completed'] else 'NO'} | "
            f"{'yes' if r['verified'] else 'NO'} | {r['wire_bytes']:,} B | {r['seconds']:.2f} s |"
        )


if __name__ == "__main__":
    sys.exit(main())
