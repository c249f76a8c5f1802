"""otawire/wire.py: every closed set of the domain has its enum value on the wire, both ways.

A codec, journal state or campaign state added on one side only would otherwise
travel as UNSPECIFIED (or be refused) without anyone noticing.
"""

from __future__ import annotations

from typing import get_args

import pytest

from modelpack import codecs
from modelpack.metadata import ModelKind
from otawire import wire
from otawire.v1 import campaigns_pb2, ota_pb2
from server.campaigns.rollout import ACTIONS, ACTIVE, FAILURE, SUCCESS
from server.releases import KINDS
from vehicle_agent.journal import State


@pytest.mark.parametrize(
    ("enum", "names"),
    [
        (wire.ENCODING, tuple(codecs.CODECS)),
        (wire.INSTALL_STATUS, (*SUCCESS, *FAILURE, "downloading")),
        (wire.RELEASE_KIND, KINDS),
        (wire.CAMPAIGN_STATE, (*ACTIVE, "aborted", "completed")),
        (wire.WAVE_STATE, ("waiting", "open", "done")),
        (
            wire.CAMPAIGN_EVENT_KIND,
            ("created", "wave_opened", "paused", "resumed", "aborted", "completed"),
        ),
        (wire.THRESHOLD_ACTION, ACTIONS),
        (wire.MODEL_KIND, get_args(ModelKind)),
        (wire.UPDATE_STATE, tuple(s.value for s in State)),
    ],
)
def test_each_domain_name_round_trips(enum, names) -> None:
    for name in names:
        value = wire.from_str(enum, name)
        assert value != 0, f"{name!r} has no value in {enum.DESCRIPTOR.full_name}"
        assert wire.to_str(enum, value) == name


def test_unset_and_unknown_values() -> None:
    assert wire.from_str(wire.ENCODING, "") == ota_pb2.ENCODING_UNSPECIFIED
    assert wire.to_str(wire.ENCODING, ota_pb2.ENCODING_UNSPECIFIED) == ""
    assert wire.to_str(wire.CAMPAIGN_STATE, 99) == "", "a newer peer's value reads as unset"
    with pytest.raises(wire.UnknownEnumName, match="ota.v1.Encoding has no value for 'lz4'"):
        wire.from_str(wire.ENCODING, "lz4")
    assert wire.from_strs(wire.ENCODING, ["full", "lz4"], skip_unknown=True) == [
        ota_pb2.ENCODING_FULL
    ]
    assert wire.from_str(wire.CAMPAIGN_STATE, "paused") == campaigns_pb2.CAMPAIGN_STATE_PAUSED


def test_timestamps_from_epoch_seconds_and_rfc3339() -> None:
    t = wire.timestamp(1_700_000_000.25)
    assert (t.seconds, t.nanos) == (1_700_000_000, 250_000_000)
    assert wire.seconds(t) == 1_700_000_000.25
    assert wire.timestamp("2026-12-03T09:00:00Z").ToJsonString() == "2026-12-03T09:00:00Z"
    assert wire.timestamp("2026-12-03T09:00:00").ToJsonString() == "2026-12-03T09:00:00Z"
    assert wire.timestamp(None).ByteSize() == wire.timestamp("").ByteSize() == 0
    assert wire.seconds(wire.timestamp(0)) == 0.0
