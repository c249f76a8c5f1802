"""The fleet inventory: what the registry knows of each vehicle, learned from check-ins and reports.

Behind the ``FleetStore`` port. Writes are thinned: a check-in that changes
nothing is written at most every ``write_every_s`` (``last_seen`` only), so a
fleet checking in every minute does not rewrite every row every minute.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from server.storage.ports import FleetStore
from server.storage.records import ReportRecord, VehicleRecord

Clock = Callable[[], float]


class Inventory:
    """Vehicles as last seen, cached in front of the store (one cache per registry process)."""

    def __init__(
        self, store: FleetStore, clock: Clock = time.time, write_every_s: float = 60.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.write_every_s = write_every_s
        self._lock = threading.RLock()
        self._seen: dict[str, VehicleRecord] = {}

    def observe(self, vehicle: VehicleRecord) -> VehicleRecord:
        """Learn a check-in. Written when something changed, else at most every ``write_every_s``."""
        now = self.clock()
        with self._lock:
            prev = self._seen.get(vehicle.vehicle_id)
            if prev is None:
                prev = self.store.get_vehicle(vehicle.vehicle_id)
            rec = dataclasses.replace(
                vehicle, first_seen=prev.first_seen if prev else now, last_seen=now
            )
            if (
                prev is None
                or dataclasses.replace(prev, last_seen=0.0)
                != dataclasses.replace(rec, last_seen=0.0)
                or now - prev.last_seen >= self.write_every_s
            ):
                self.store.upsert_vehicle(rec)
                self._seen[rec.vehicle_id] = rec
        return rec

    def learn_active(self, rep: ReportRecord) -> None:
        """A report says which version is active now; the inventory must not wait for the next check-in."""
        if not rep.active_version or rep.name == "*":
            return
        with self._lock:
            prev = self._seen.get(rep.vehicle_id) or self.store.get_vehicle(rep.vehicle_id)
            if prev is None or prev.installed.get(rep.name, ("", ""))[0] == rep.active_version:
                return
            sha = rep.sha256 if rep.active_version == rep.version else ""
            rec = dataclasses.replace(
                prev, installed={**prev.installed, rep.name: (rep.active_version, sha)}
            )
            self.store.upsert_vehicle(rec)
            self._seen[rec.vehicle_id] = rec

    def get(self, vehicle_id: str) -> VehicleRecord | None:
        return self.store.get_vehicle(vehicle_id)

    def all(self) -> list[VehicleRecord]:
        return self.store.list_vehicles()
