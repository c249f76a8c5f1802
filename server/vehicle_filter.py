"""The ``filter`` of ``Fleet.ListVehicles`` (and the dashboard): a small subset of AIP-160.

    tags.fleet = "demo" AND model.squeezenet1.0 = "1.0.1" AND NOT status = "failed"
    vehicle_id = "car-*"        hardware_id != "jetson"        tags:fleet        campaign:c-1a2b

A filter is terms joined by ``AND``; each term is ``FIELD OP VALUE`` with ``OP``
one of ``=``, ``!=`` or ``:`` (has), optionally preceded by ``NOT`` or ``-``.
Values are bare words or double-quoted strings; a trailing ``*`` matches any
suffix (AIP-160's wildcard). Fields:

- ``vehicle_id``, ``hardware_id``, ``status`` (the last report's status), ``reason``;
- ``tags.KEY`` (the value of tag ``KEY=VALUE``), ``tags:KEY`` (carries the key);
- ``model.NAME`` (installed version of model NAME), ``active.NAME`` (the version it serves);
- ``campaign`` (a campaign id it belongs to; ``:`` and ``=`` mean the same).

``OR`` and parentheses are left out on purpose: inventory questions are
conjunctions, and a filter that parses is one a person can read back.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

_TOKEN = re.compile(r'\s*(?:(?P<q>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:)|(?P<w>[^\s=!:"]+))')
_SCALARS = ("vehicle_id", "hardware_id", "status", "reason")
_MAPS = ("tags", "model", "active")


class FilterError(ValueError):
    """A filter that does not parse; the message says where and what is allowed."""


@dataclass(frozen=True)
class VehicleFacts:
    """What a filter can see of one vehicle."""

    vehicle_id: str
    hardware_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    model: Mapping[str, str] = field(default_factory=dict)  # name -> installed version
    active: Mapping[str, str] = field(default_factory=dict)  # name -> version served
    status: str = ""
    reason: str = ""
    campaign: Sequence[str] = ()


Predicate = Callable[[VehicleFacts], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(
                f"filter: cannot read {text[pos:]!r} at character {pos + 1}; "
                'write terms like tags.fleet = "demo" joined by AND'
            )
        kind = m.lastgroup or "w"
        value = m.group(kind)
        if kind == "q":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = m.end()
    return out


def _matches(actual: str | None, pattern: str) -> bool:
    if actual is None:
        return False
    if pattern.endswith("*"):
        return fnmatch.fnmatchcase(actual, pattern.replace("[", "[[]"))
    return actual == pattern


def _term(name: str, op: str, value: str) -> Predicate:
    base, _, key = name.partition(".")
    if base in _SCALARS and not key:
        if op == ":":
            return lambda v: value in getattr(v, base)
        return lambda v: _matches(getattr(v, base), value) == (op == "=")
    if base == "campaign" and not key:
        if op == "!=":
            return lambda v: value not in v.campaign
        return lambda v: any(_matches(c, value) for c in v.campaign)
    if base in _MAPS and key:
        if op == ":":
            return lambda v: value in getattr(v, base).get(key, "")
        return lambda v: _matches(getattr(v, base).get(key), value) == (op == "=")
    if base in _MAPS and op == ":":  # tags:fleet — has the key (or tags:"fleet=demo" — has the tag)
        k, eq, val = value.partition("=")
        return lambda v: k in getattr(v, base) and (not eq or getattr(v, base)[k] == val)
    fields = ", ".join([*_SCALARS, "campaign", "tags.KEY", "model.NAME", "active.NAME"])
    raise FilterError(f"filter: unknown field {name!r}; use one of {fields}")


def compile_filter(text: str) -> Predicate:
    """The predicate ``text`` describes; an empty filter matches every vehicle."""
    toks = _tokens(text)
    preds: list[Predicate] = []
    i = 0
    while i < len(toks):
        negate = False
        if toks[i] == ("w", "NOT") or (
            toks[i][0] == "w" and toks[i][1].startswith("-") and len(toks[i][1]) > 1
        ):
            negate = True
            if toks[i][1] == "NOT":
                i += 1
            else:
                toks[i] = ("w", toks[i][1][1:])
        if i + 2 >= len(toks):
            raise FilterError(
                f"filter: incomplete term at the end of {text!r}; "
                "each term is FIELD = VALUE, FIELD != VALUE or FIELD:VALUE"
            )
        (k1, name), (k2, op), (k3, value) = toks[i : i + 3]
        if k1 != "w" or k2 != "op" or k3 not in ("w", "q"):
            raise FilterError(
                f'filter: expected FIELD OP VALUE near {name!r}; e.g. hardware_id = "jetson"'
            )
        pred = _term(name, op, value)
        preds.append((lambda p: lambda v: not p(v))(pred) if negate else pred)
        i += 3
        if i < len(toks):
            if toks[i] != ("w", "AND"):
                word = toks[i][1]
                hint = " (OR is not supported: run two queries)" if word.upper() == "OR" else ""
                raise FilterError(f"filter: expected AND between terms, found {word!r}{hint}")
            i += 1
            if i == len(toks):
                raise FilterError("filter: nothing after the last AND")
    return lambda v: all(p(v) for p in preds)
