"""How files are named on the wire: one place for rules both ends must agree on.

A model version is the TUF target ``<name>/<version>.onnx``. It is downloaded
under TUF's consistent-snapshot name, the file name prefixed with its sha256
(``<name>/<sha256>.<version>.onnx``), so a cached or replayed file can never pass
for another version. Metadata under ``director/`` is the calling vehicle's
director chain; ``encodings/<blob sha256>`` is a stored transport encoding.
"""

from __future__ import annotations

DIRECTOR_PREFIX = "director/"
ENCODING_PREFIX = "encodings/"


def model_target_path(name: str, version: str) -> str:
    """The TUF target path of model ``name`` ``version``."""
    return f"{name}/{version}.onnx"


def model_version_name(name: str, version: str) -> str:
    """The resource name of a model version (AIP-122): ``models/{name}/versions/{version}``."""
    return f"models/{name}/versions/{version}"


def parse_model_version_name(resource: str) -> tuple[str, str] | None:
    """``models/{name}/versions/{version}`` -> (name, version); None when it is not one."""
    parts = resource.split("/")
    if (
        len(parts) != 4
        or parts[0] != "models"
        or parts[2] != "versions"
        or not parts[1]
        or not parts[3]
    ):
        return None
    return parts[1], parts[3]


def campaign_name(campaign_id: str) -> str:
    """The resource name of a campaign: ``campaigns/{campaign_id}``."""
    return f"campaigns/{campaign_id}"


def parse_campaign_name(resource: str) -> str | None:
    """``campaigns/{campaign_id}`` -> the id; None when it is not one."""
    prefix, sep, cid = resource.partition("/")
    if prefix != "campaigns" or not sep or not cid or "/" in cid:
        return None
    return cid


def consistent_target_path(target_path: str, sha256: str) -> str:
    """``dir/file`` -> ``dir/<sha256>.file``: the name a target is downloaded under."""
    directory, sep, base = target_path.rpartition("/")
    return f"{directory}{sep}{sha256}.{base}"


def split_consistent_path(path: str) -> tuple[str, str] | None:
    """``dir/<sha256>.file`` -> (``dir/file``, sha256); None when ``path`` has no digest prefix."""
    directory, sep, base = path.rpartition("/")
    digest, dot, rest = base.partition(".")
    if not dot or not digest:
        return None
    return f"{directory}{sep}{rest}", digest


def encoding_path(blob_sha256: str) -> str:
    return f"{ENCODING_PREFIX}{blob_sha256}"


def director_path(filename: str) -> str:
    """The Download path of ``filename`` of the calling vehicle's director chain."""
    return f"{DIRECTOR_PREFIX}{filename}"
