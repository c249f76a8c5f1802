"""Releases: publishing stores and signs a version; only a release sends it to vehicles.

A vehicle is offered a version when an explicit release names it (``ota release
NAME VERSION --fleet | --tag K=V | --vehicle ID``), when a campaign's open wave
holds it, or when a campaign for it completed. Fleet operators expect these as
separate steps (Mender, hawkBit, AWS IoT Jobs): a plain publish reaching every
car at its next check-in is how a fleet ships the wrong model by accident.

The release log also records, with who and why, the two other decisions that
change what cars may run: a publish below the highest version (``--allow-downgrade``)
and a re-release (an old version signed again with the highest release counter).

Release counters live in the signed image targets; ``release_counter`` reads them
so that rollbacks and director assignments below what a vehicle runs are refused
up front, with the remedy (``ota rerelease``), instead of being reported as a
rollback attack by every car that receives them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tuf.api.metadata import Metadata, Targets

from otawire.paths import model_target_path
from server.errors import FailedPrecondition, InvalidArgument, NotFound, RegistryError
from server.models import semver_key
from server.storage import MetadataStore, ReleaseRecord, TufMetadataStore, VehicleRecord

log = logging.getLogger(__name__)

FLEET = "fleet"
KINDS = ("release", "downgrade", "rerelease")


def scope_of(fleet: bool = False, tag: str = "", vehicle: str = "") -> str:
    """The stored form of a release's audience: ``fleet``, ``tag:K=V`` or ``vehicle:ID``."""
    given = [
        s
        for s in (
            FLEET if fleet else "",
            f"tag:{tag}" if tag else "",
            f"vehicle:{vehicle}" if vehicle else "",
        )
        if s
    ]
    if len(given) != 1:
        raise _error(
            "invalid", "say who gets it: exactly one of --fleet, --tag K=V or --vehicle ID"
        )
    if tag and ("=" not in tag or tag.startswith("=")):
        raise _error("invalid", f"--tag {tag!r}: expected K=V, e.g. --tag fleet=eu-taxi")
    return given[0]


def describe_scope(scope: str) -> str:
    """``fleet`` -> ``the fleet``; ``tag:K=V`` -> ``vehicles tagged K=V``; ``vehicle:ID`` -> ``vehicle ID``."""
    kind, _, value = scope.partition(":")
    return {
        "fleet": "the fleet",
        "tag": f"vehicles tagged {value}",
        "vehicle": f"vehicle {value}",
    }.get(kind, scope)


def scope_matches(scope: str, vehicle: VehicleRecord) -> bool:
    kind, _, value = scope.partition(":")
    if kind == FLEET:
        return True
    if kind == "tag":
        return value in vehicle.tags
    return kind == "vehicle" and value == vehicle.vehicle_id


_ERRORS: dict[str, type[RegistryError]] = {
    "invalid": InvalidArgument,
    "not_found": NotFound,
    "failed_precondition": FailedPrecondition,
}


def _error(kind: str, message: str) -> RegistryError:
    return _ERRORS[kind](message)


_semver = semver_key


class Releases:
    """The release log and what it releases to each vehicle.

    The log is read at every check-in, so it is cached; this process's own writes
    invalidate the cache at once, other replicas' show within ``refresh_s``.
    """

    def __init__(
        self, store: MetadataStore, clock: Callable[[], float] = time.time, refresh_s: float = 1.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cache: tuple[float, list[ReleaseRecord]] | None = None

    def release(
        self, name: str, version: str, scope: str, actor: str = "", reason: str = ""
    ) -> ReleaseRecord:
        """Send ``name`` ``version`` to the vehicles ``scope`` names, from their next check-in."""
        if self.store.get_model(name, version) is None:
            raise _error(
                "not_found", f"{name} {version} is not published; `ota models` lists what is"
            )
        rec = self.record("release", name, version, scope, actor, reason)
        log.info(
            "released %s %s to %s (by %s)", name, version, describe_scope(scope), actor or "unknown"
        )
        return rec

    def record(
        self, kind: str, name: str, version: str, scope: str = "", actor: str = "", reason: str = ""
    ) -> ReleaseRecord:
        assert kind in KINDS, kind
        rec = ReleaseRecord(name, version, kind, scope, actor, reason, self.clock())
        self.store.add_release(rec)
        with self._lock:
            self._cache = None
        return rec

    def log(self, name: str | None = None) -> list[ReleaseRecord]:
        return self.store.list_releases(name or None)

    def _all(self) -> list[ReleaseRecord]:
        now = time.monotonic()
        with self._lock:
            if self._cache is not None and now - self._cache[0] < self.refresh_s:
                return self._cache[1]
        recs = self.store.list_releases(None)
        with self._lock:
            self._cache = (now, recs)
        return recs

    def released_for(self, vehicle: VehicleRecord) -> dict[tuple[str, str], float]:
        """(name, version) released to ``vehicle``, with the time of the latest release naming it."""
        out: dict[tuple[str, str], float] = {}
        for r in self._all():
            if r.kind == "release" and scope_matches(r.scope, vehicle):
                key = (r.name, r.version)
                out[key] = max(out.get(key, r.at), r.at)
        return out

    def check_order(self, name: str, version: str, allow_downgrade: bool, reason: str) -> None:
        """Refuse a version below the highest published of ``name`` unless explicitly allowed."""
        older_than = [
            r.version for r in self.store.list_models(name) if _semver(r.version) > _semver(version)
        ]
        if not older_than:
            return
        highest = max(older_than, key=_semver)
        if not allow_downgrade:
            raise _error(
                "failed_precondition",
                f"{name} {version} is below {highest}, the highest published: vehicles would go back to it. "
                "Publish a higher version, or pass --allow-downgrade --reason WHY (recorded)",
            )
        if not reason.strip():
            raise _error(
                "invalid",
                f"--allow-downgrade of {name} {version} below {highest} needs --reason WHY "
                "(it is recorded with who asked)",
            )


def release_counter(store: TufMetadataStore, name: str, version: str) -> int | None:
    """The release counter the image repository signed for ``name`` ``version`` (None: not signed)."""
    data = store.get_tuf_metadata("targets")
    if data is None:
        return None
    tf = Metadata[Targets].from_bytes(data).signed.targets.get(model_target_path(name, version))
    if tf is None:
        return None
    return int((tf.custom or {}).get("release_counter", 0))


def refuse_below_counter(
    name: str, version: str, counter: int | None, running: int, who: str
) -> None:
    """Refuse sending ``name`` ``version`` (``counter``) to vehicles running ``running``; ``who`` says who,
    with its verb ("car-1 runs", "the vehicles that took 1.0.1 run")."""
    if counter is None or counter >= running:
        return
    raise _error(
        "failed_precondition",
        f"{name} {version} has release counter {counter}, below {running}: {who} {running}, and vehicles "
        f"never install a lower counter (they would report a rollback attack). "
        f"Run `ota rerelease {name} {version}` first: it signs those bytes again with a higher counter",
    )
