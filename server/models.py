"""What a publishable model version is: its name, its semantic version, valid ONNX, its target.

Pure rules, shared by the registry (``publishing.py``) and the publisher's
client (``client.py``, which checks before uploading).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import onnx
from tuf.api.metadata import TargetFile

from modelpack.metadata import ONNX_METADATA_KEY, ModelInfo
from otawire.paths import model_target_path
from server.errors import InvalidArgument
from server.signing.targets import target_custom

MAX_MODEL_BYTES = 512 * 1024 * 1024  # an AlexNet-sized model (240 MB) fits twice
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)

SemverKey = tuple[int, int, int, tuple[Any, ...]]


def semver_key(version: str) -> SemverKey:
    """Sort key for semantic versions; a pre-release sorts before its release."""
    m = _SEMVER_RE.match(version)
    if not m:
        raise InvalidArgument(f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    major, minor, patch, pre = m.groups()
    pre_key: tuple[Any, ...] = (
        (1,)
        if pre is None
        else (0, *((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")))
    )
    return (int(major), int(minor), int(patch), pre_key)


def next_patch(versions: Iterable[str]) -> str:
    """The version after the highest of ``versions`` (1.2.3 -> 1.2.4; pre-releases: their release)."""
    good = [v for v in versions if _SEMVER_RE.match(v)]
    if not good:
        return "1.0.0"
    major, minor, patch, pre = _SEMVER_RE.match(max(good, key=semver_key)).groups()  # type: ignore[union-attr]
    return f"{major}.{minor}.{int(patch) + (0 if pre else 1)}"


def immutable_version(name: str, version: str, have: str, new: str, versions: Iterable[str]) -> str:
    """One line for a publish of ``version`` with other bytes than the published ones: cause and fix."""
    return (
        f"{name} {version} is already published with other bytes (sha256 {have[:16]}…, this file "
        f"{new[:16]}…) and versions are immutable: publish this file as a new version "
        f"(e.g. --version {next_patch(versions)}), or publish the file whose sha256 is {have[:16]}… "
        f"to keep {version}"
    )


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"model name {name!r} must be lowercase letters, digits, '.', '_' or '-'"
        )


def validate_onnx(data: bytes, where: str = "upload") -> onnx.ModelProto:
    """Refuse anything that is not a well-formed ONNX model, saying why."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise InvalidArgument(
            f"{where} is not an ONNX model (protobuf decode failed: {e})"
        ) from None
    if not model.graph.node:
        raise InvalidArgument(f"{where} is not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unknown error"
        raise InvalidArgument(f"{where} fails onnx.checker: {first}") from None
    return model


def model_info_json(model: onnx.ModelProto, metadata_json: str) -> dict[str, Any]:
    """The publisher's ModelInfo if given, else the one embedded in the ONNX file."""
    text = metadata_json.strip()
    if not text:
        text = next((p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY), "")
    if not text:
        return {}
    try:
        return ModelInfo.from_json(text).to_dict()
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"model metadata is not a valid ModelInfo: {e}") from None


def signed_json(text: object) -> dict[str, Any]:
    """A JSON object carried as a signed string (``model_info_json``); {} when it is not one."""
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def model_target(
    name: str,
    version: str,
    data: bytes,
    hardware_ids: Iterable[str],
    metadata_json: str,
    release_counter: int,
) -> TargetFile:
    """The TargetFile the publisher signs for ``data`` (validated as ONNX first)."""
    model = validate_onnx(data, where=f"{name} {version}")
    info = model_info_json(model, metadata_json)
    return TargetFile(
        length=len(data),
        hashes={"sha256": hashlib.sha256(data).hexdigest()},
        path=model_target_path(name, version),
        unrecognized_fields={
            "custom": target_custom(name, version, hardware_ids, info, release_counter)
        },
    )
