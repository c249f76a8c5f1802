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
