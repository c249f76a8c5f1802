"""The AIP-160 subset that ``Fleet.ListVehicles``, ``ota vehicles list`` and the dashboard filter by."""

from __future__ import annotations

import pytest

from server.vehicle_filter import FilterError, VehicleFacts, compile_filter

CARS = [
    VehicleFacts(
        "car-1",
        "x86",
        {"fleet": "berlin"},
        {"sq": "1.0.1"},
        {"sq": "1.0.1"},
        "confirmed",
        "",
        ("c-1",),
    ),
    VehicleFacts(
        "car-2",
        "jetson",
        {"fleet": "berlin", "beta": "yes"},
        {"sq": "1.0.0"},
        {"sq": "1.0.0"},
        "failed",
        "self-test failed: top-1 changed",
        ("c-1", "c-2"),
    ),
    VehicleFacts("truck-1", "jetson", {"fleet": "paris"}, {}, {}, "", "", ()),
]


def ids(text: str) -> list[str]:
    match = compile_filter(text)
    return [c.vehicle_id for c in CARS if match(c)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ["car-1", "car-2", "truck-1"]),
        ('tags.fleet = "berlin"', ["car-1", "car-2"]),
        ("tags.fleet = berlin AND hardware_id = jetson", ["car-2"]),
        ("tags:beta", ["car-2"]),
        ('tags:"fleet=paris"', ["truck-1"]),
        ('vehicle_id = "car-*"', ["car-1", "car-2"]),
        ('model.sq = "1.0.1"', ["car-1"]),
        ("active.sq != 1.0.1", ["car-2", "truck-1"]),
        ("NOT status = failed", ["car-1", "truck-1"]),
        ("-status = failed AND tags.fleet = berlin", ["car-1"]),
        ("reason:self-test", ["car-2"]),
        ("campaign:c-2", ["car-2"]),
        ("campaign = c-1", ["car-1", "car-2"]),
        ('vehicle_id = "with \\"quote"', []),
    ],
)
def test_filters_select(text: str, expected: list[str]) -> None:
    assert ids(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = red", "unknown field 'colour'"),
        ("hardware_id = x OR hardware_id = y", "OR is not supported"),
        ("hardware_id =", "incomplete term"),
        ("hardware_id = x AND", "nothing after the last AND"),
        ('hardware_id = "x', "cannot read"),
        ("= x y", "expected FIELD OP VALUE"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(text)
