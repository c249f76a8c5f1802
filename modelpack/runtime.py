"""ONNX Runtime sessions and the ModelInfo embedded in an ONNX file.

Kept apart from the zoo so the agent can run any published model with only
this module, ``imaging`` and ``selftest``. The agent's path (``make_session``)
needs only ONNX Runtime: the ``onnx`` package (0.7 s CPU and 15 MB per start)
is imported by the functions that parse or edit a ModelProto, which only the
registry, the zoo and the tools call.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from modelpack.metadata import ONNX_METADATA_KEY, ModelInfo

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


class NotAnOnnxModel(ValueError):
    """The bytes given are not a loadable ONNX model."""


def load_model_proto(source: bytes | str | Path, *, what: str | None = None) -> onnx.ModelProto:
    """Parse ONNX bytes (or a file), with a clear error for anything else."""
    import onnx
    from google.protobuf.message import DecodeError

    label = what or (str(source) if not isinstance(source, bytes) else "model bytes")
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        source = path.read_bytes()
    if not source:
        raise NotAnOnnxModel(f"{label}: empty file, not an ONNX model")
    try:
        model = onnx.load_model_from_string(source)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise NotAnOnnxModel(
            f"{label}: not an ONNX model ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not model.graph.node or model.ir_version == 0:
        raise NotAnOnnxModel(f"{label}: not an ONNX model (no graph or IR version)")
    return model


def read_model_info(source: bytes | str | Path | onnx.ModelProto) -> ModelInfo | None:
    """The ModelInfo stored in an ONNX file's ``metadata_props``, or None."""
    model = source if hasattr(source, "metadata_props") else load_model_proto(source)
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            return ModelInfo.from_json(prop.value)
    return None


def set_model_info(model: onnx.ModelProto, info: ModelInfo) -> None:
    """Store ``info`` in ``model.metadata_props`` (replacing an earlier one)."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    for key, value in keep + [(ONNX_METADATA_KEY, info.to_json())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def make_session(
    source: bytes | str | Path, *, threads: int = 1, memory_arena: bool = True
) -> ort.InferenceSession:
    """A CPU InferenceSession. One thread by default: results are then
    reproducible run to run, and the machines we share have few cores.

    ``memory_arena=False`` returns activation memory after each run instead of keeping
    the peak per session (the agent holds several sessions in a fixed budget)."""
    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = memory_arena
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    label = "model bytes"
    model: bytes | str = source if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        # ORT reads the file itself: no copy of the model's bytes held in Python meanwhile.
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        label = str(path)
        if path.stat().st_size == 0:
            raise NotAnOnnxModel(f"{label}: empty file, not an ONNX model")
    elif not source:
        raise NotAnOnnxModel(f"{label}: empty file, not an ONNX model")
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own (unexported) exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotAnOnnxModel(f"{label}: not an ONNX model ONNX Runtime can load ({first})") from exc


def session_model_info(session: ort.InferenceSession) -> ModelInfo | None:
    """The ModelInfo embedded in the model a session was made from (ORT reads ``metadata_props``)."""
    text = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    return ModelInfo.from_json(text) if text else None
