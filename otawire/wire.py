"""The contract's enums and Timestamps <-> the domain's strings and epoch seconds.

Enums, by one rule for every closed set of the contract:

The domain (registry storage, the agent's journal, campaign logic, modelpack codecs) keeps
plain strings such as ``"tensordelta"`` or ``"rolled_back"``; the wire carries enums
(``ENCODING_TENSORDELTA``, ``INSTALL_STATUS_ROLLED_BACK``). The value name is the enum's
prefix plus the domain string upper-cased; ``*_UNSPECIFIED`` (0) is ``""``. So a new
encoding or state is one line in a ``.proto`` file and nothing here. Every servicer and
client converts at its edge with these functions, and only there.

Instants: the domain keeps seconds since the epoch (floats) or the stores' RFC 3339
text; the wire carries ``google.protobuf.Timestamp``. An unset Timestamp is 0 / "not set".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from otawire.v1 import campaigns_pb2, inference_pb2, ota_pb2

# A generated enum class (``ota_pb2.Encoding``); at run time an ``EnumTypeWrapper``.
E = TypeVar("E", bound=int)


T = TypeVar("T")


def all_pages(fetch: Callable[[str], tuple[Sequence[T], str]]) -> list[T]:
    """Every item of an AIP-158 list: ``fetch(page_token)`` gives one page's items and the
    next token, called from "" until the token comes back empty."""
    out: list[T] = []
    token = ""
    while True:
        items, token = fetch(token)
        out.extend(items)
        if not token:
            return out


class UnknownEnumName(ValueError):
    """A domain string that has no value in the proto enum (an out-of-date contract)."""


def _wrapper(enum: type[int]) -> EnumTypeWrapper:
    return cast(EnumTypeWrapper, enum)


@functools.cache  # on every check-in's path; an enum's prefix never changes
def _prefix(wrapper: EnumTypeWrapper) -> str:
    unspecified = wrapper.Name(0)
    assert unspecified.endswith("_UNSPECIFIED"), unspecified
    return unspecified.removesuffix("UNSPECIFIED")


def to_str(enum: type[int], value: int) -> str:
    """``INSTALL_STATUS_ROLLED_BACK`` (its number) -> ``"rolled_back"``; 0 or unknown -> ``""``."""
    if value == 0:
        return ""
    try:
        name = _wrapper(enum).Name(value)
    except ValueError:
        return ""  # a newer peer's value: read as "not set"
    return name.removeprefix(_prefix(_wrapper(enum))).lower()


def from_str(enum: type[E], name: str) -> E:
    """``"rolled_back"`` -> ``INSTALL_STATUS_ROLLED_BACK``; ``""`` -> 0; unknown -> ``UnknownEnumName``."""
    wrapper = _wrapper(enum)
    if not name:
        return cast(E, 0)
    try:
        return cast(E, wrapper.Value(_prefix(wrapper) + name.upper()))
    except ValueError:
        raise UnknownEnumName(f"{wrapper.DESCRIPTOR.full_name} has no value for {name!r}") from None


def to_strs(enum: type[int], values: Iterable[int]) -> list[str]:
    return [s for s in (to_str(enum, v) for v in values) if s]


def from_strs(enum: type[E], names: Iterable[str], *, skip_unknown: bool = False) -> list[E]:
    """Each name's value; with ``skip_unknown`` names the contract lacks are left out
    (e.g. an encoding this agent decodes but the registry's contract cannot name)."""
    out = []
    for n in names:
        try:
            out.append(from_str(enum, n))
        except UnknownEnumName:
            if not skip_unknown:
                raise
    return out


def timestamp(when: float | str | None) -> Timestamp:
    """A Timestamp from epoch seconds or RFC 3339 text (naive text is UTC); 0, "" or None: unset."""
    t = Timestamp()
    if isinstance(when, str):
        if not when:
            return t
        parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if when:
        whole = math.floor(when)
        # seconds and nanos apart: epoch seconds * 1e9 is past a float's exact integers
        t.seconds, t.nanos = whole, min(round((when - whole) * 1e9), 999_999_999)
    return t


def seconds(t: Timestamp) -> float:
    """Epoch seconds of a Timestamp; 0.0 when unset."""
    return t.seconds + t.nanos / 1e9


# The contract's closed sets, by the domain's name for them.
ENCODING = ota_pb2.Encoding
INSTALL_STATUS = ota_pb2.InstallStatus
RELEASE_KIND = ota_pb2.ReleaseKind
CAMPAIGN_STATE = campaigns_pb2.CampaignState
WAVE_STATE = campaigns_pb2.WaveState
CAMPAIGN_EVENT_KIND = campaigns_pb2.CampaignEventKind
THRESHOLD_ACTION = campaigns_pb2.ThresholdAction
MODEL_KIND = inference_pb2.ModelKind
UPDATE_STATE = inference_pb2.UpdateState
