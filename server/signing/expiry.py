"""How long each role's signed metadata stays valid, and the clock it is measured with."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from server.signing.errors import KeystoreError

ROLES = ("root", "targets", "snapshot", "timestamp")


@dataclass(frozen=True)
class Expiries:
    """How long each role's metadata stays valid (TUF's freshness guarantee).

    Timestamp hours, snapshot days, targets weeks, root a year: a frozen or
    replayed repository is caught within one timestamp lifetime.
    """

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(weeks=4)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(hours=6)

    def for_role(self, role: str) -> timedelta:
        return getattr(self, role)

    def to_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name).total_seconds()) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Expiries:
        return cls(
            **{
                k: timedelta(seconds=int(v))
                for k, v in d.items()
                if k in {f.name for f in fields(cls)}
            }
        )

    @classmethod
    def parse(cls, spec: str) -> Expiries:
        """``"timestamp=6h,snapshot=7d,targets=4w,root=365d"`` (any subset)."""
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        out: dict[str, timedelta] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            role, _, value = part.partition("=")
            if role not in ROLES or not value or value[-1] not in units or not value[:-1].isdigit():
                raise KeystoreError(
                    f"bad expiry {part!r}: use ROLE=N{{s,m,h,d,w}} with ROLE in {', '.join(ROLES)}"
                )
            out[role] = timedelta(seconds=int(value[:-1]) * units[value[-1]])
        return cls(**out)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
