"""Where the registry's time goes in one vehicle check-in (SQLite and PostgreSQL).

A check-in, as the agent makes it (``VehicleAgent.update_once``), is four calls:
SubmitManifest, CheckForUpdate, the image ``timestamp.json`` and the director's
``director/timestamp.json`` (which re-signs that vehicle's chain when its
instructions changed). This runs those four steps in-process against a real
``Registry`` (real signatures, real manifests, real database), without gRPC, so
that the figures are registry logic only; each step is timed, and the whole
loop is run once more under cProfile for the top functions.

- *first* check-in of a vehicle: its director chain is signed (targets,
  snapshot, timestamp), the per-vehicle signing the issue asks to keep;
- *steady* check-ins: nothing changed, nothing is signed.

    python bench/checkin_profile.py                          # SQLite, 40 vehicles
    python bench/checkin_profile.py --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
STEPS = ("manifest", "check", "image_timestamp", "director_timestamp")


def pg_schema(dsn: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema for this run (dropped afterwards), selected through search_path."""
    from urllib.parse import quote

    import psycopg

    name = f"ota_prof_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{name}"')

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-c search_path={name}')}", drop


def run(db: str, vehicles: int, rounds: int, top: int) -> dict:
    from modelpack import zoo
    from otawire import tls
    from otawire.v1 import ota_pb2
    from server.registry import Registry
    from server.signing.keys import Keystore
    from vehicle_agent.manifest import InstalledImage, VersionManifest, sign_manifest

    drop = None
    with tempfile.TemporaryDirectory(prefix="ota-prof-") as tmp:
        scratch = Path(tmp)
        Keystore.init(scratch / "keys")
        tls.make_ca(scratch / "pki")
        if db:
            db, drop = pg_schema(db)
        reg = Registry.open(
            scratch / "registry",
            scratch / "keys",
            db=db or None,
            ca_pem=(scratch / "pki" / tls.CA_CERT).read_bytes(),
        )
        try:
            model = zoo.build("squeezenet1.0")
            rec = reg.publish_bytes("squeezenet1.0", "1.0.0", model)
            ids = [f"car-{i:04d}" for i in range(vehicles)]
            certs = {v: tls.issue(scratch / "pki", "vehicle", v) for v in ids}
            counters = dict.fromkeys(ids, 0)
            installed = {rec.name: (rec.version, rec.sha256)}

            def checkin(vid: str, times: dict[str, list[float]]) -> None:
                counters[vid] += 1
                man = VersionManifest(
                    vid,
                    "ecu-a",
                    counters[vid],
                    (InstalledImage(rec.name, rec.version, rec.sha256, 1),),
                )
                msg = sign_manifest(man, certs[vid])
                steps = {
                    "manifest": lambda: reg.director.process_manifest(msg, None, None),
                    "check": lambda: reg.offers_for(vid, "ecu-a", installed, [rec.name]),
                    "image_timestamp": lambda: list(
                        reg.read_chunks("metadata", "timestamp.json", 0, 0, 1 << 20)
                    ),
                    "director_timestamp": lambda: list(
                        reg.read_chunks("metadata", "director/timestamp.json", 0, 0, 1 << 20, vid)
                    ),
                }
                for name in STEPS:
                    t = time.perf_counter()
                    steps[name]()
                    times[name].append((time.perf_counter() - t) * 1000)

            first: dict[str, list[float]] = {s: [] for s in STEPS}
            for vid in ids:
                checkin(vid, first)
            steady: dict[str, list[float]] = {s: [] for s in STEPS}
            for _ in range(rounds):
                for vid in ids:
                    checkin(vid, steady)
            prof = cProfile.Profile()
            prof.enable()
            for vid in ids:
                checkin(vid, {s: [] for s in STEPS})
            prof.disable()
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(top)
            del ota_pb2
        finally:
            reg.store.close()
            if drop:
                drop()
    med = lambda d: {s: statistics.median(d[s]) for s in STEPS}  # noqa: E731
    return {
        "engine": "postgresql" if db else "sqlite",
        "vehicles": vehicles,
        "rounds": rounds,
        "first_ms": med(first),
        "steady_ms": med(steady),
        "first_total_ms": sum(med(first).values()),
        "steady_total_ms": sum(med(steady).values()),
        "profile": text.getvalue(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db",
        default="",
        help="postgresql://… (a fresh schema is made and dropped); default SQLite",
    )
    ap.add_argument("--vehicles", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3, help="steady check-ins per vehicle")
    ap.add_argument("--top", type=int, default=25, help="functions listed from the profile")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    r = run(a.db, a.vehicles, a.rounds, a.top)
    print(
        f"\n### Check-in cost in the registry ({r['engine']}, {r['vehicles']} vehicles, median ms per step)\n"
    )
    print("| step | first check-in (signs the vehicle's chain) | steady check-in |")
    print("|---|---|---|")
    for s in STEPS:
        print(f"| {s} | {r['first_ms'][s]:.2f} | {r['steady_ms'][s]:.2f} |")
    print(f"| **total** | **{r['first_total_ms']:.2f}** | **{r['steady_total_ms']:.2f}** |")
    print("\nTop functions by own time (one steady round):\n")
    print(r["profile"])
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
