"""Local inference over gRPC on a Unix socket: the perception stack's view of the model.

The servicer runs each request on whatever ``ModelHost`` serves at that
instant (see ``runtime.ModelHost``): swaps happen underneath without failing
or delaying a call. A malformed request is the client's fault
(INVALID_ARGUMENT) and does not count against the model; an inference that
fails or returns NaN on a well-formed input is the model's fault (INTERNAL)
and counts in its health window.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from PIL import Image, UnidentifiedImageError

from modelpack.imaging import load_labels, preprocess
from otawire.v1 import inference_pb2, inference_pb2_grpc
from otawire.wire import MODEL_KIND, UPDATE_STATE, from_str
from vehicle_agent.runtime import LoadedModel, ModelFault, ModelHost

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8 * 1024 * 1024  # one camera frame, encoded or as a tensor
SOCKET_PATH_MAX = 107  # sun_path on Linux, minus the terminating NUL


class BadRequest(ValueError):
    pass


def frame_to_input(
    frame: inference_pb2.Frame, model: LoadedModel
) -> tuple[np.ndarray, tuple[float, float]]:
    """The model's input tensor for ``frame`` and the scale back to the frame's pixels."""
    info = model.info
    kind = frame.WhichOneof("input")
    if kind == "tensor":
        shape = tuple(int(d) for d in frame.tensor.shape)
        want = tuple(int(d) for d in info.input_shape)
        if shape != want:
            raise BadRequest(
                f"tensor shape {list(shape)} does not match the model's input {list(want)}"
            )
        if len(frame.tensor.data) != 4 * int(np.prod(shape)):
            raise BadRequest(
                f"tensor data is {len(frame.tensor.data)} B, shape {list(shape)} needs {4 * int(np.prod(shape))} B"
            )
        return np.frombuffer(frame.tensor.data, dtype="<f4").reshape(shape), (1.0, 1.0)
    if kind == "image":
        try:
            with Image.open(io.BytesIO(frame.image)) as im:
                image = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise BadRequest(f"frame.image is not a readable image: {e}") from None
        pre = info.preprocessing
        return preprocess(image, pre), (image.width / pre.width, image.height / pre.height)
    raise BadRequest("frame has neither an image nor a tensor")


def _served(name: str, model: LoadedModel) -> inference_pb2.Served:
    return inference_pb2.Served(model=name, version=model.version, sha256=model.sha256)


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(self, host: ModelHost, state_of: Callable[[str], str] = lambda name: "") -> None:
        self.host = host
        self.state_of = state_of

    def _prepare(
        self, name: str, frame: inference_pb2.Frame, context: grpc.ServicerContext, kind: str
    ):
        model = self.host.get(name)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model {name!r} is served on this vehicle")
            raise AssertionError("unreachable: context.abort raises")
        if model.info.kind != kind:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"{name} is a {model.info.kind}, not a {kind}"
            )
        try:
            x, scale = frame_to_input(frame, model)
        except BadRequest as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return x, scale

    def _run(
        self, name: str, x: np.ndarray, context: grpc.ServicerContext
    ) -> tuple[np.ndarray, LoadedModel, float]:
        t = time.perf_counter()
        try:
            out, model = self.host.run(name, x)
        except ModelFault as e:
            context.abort(grpc.StatusCode.INTERNAL, str(e))
        except LookupError as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        return out, model, (time.perf_counter() - t) * 1e3

    def Classify(
        self, request: inference_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> inference_pb2.ClassifyResponse:
        from modelpack.classify import top_k

        x, _ = self._prepare(request.model, request.frame, context, "classifier")
        scores, model, ms = self._run(request.model, x, context)
        labels = (
            load_labels(model.info.labels)
            if model.info.labels
            else [str(i) for i in range(scores.shape[-1])]
        )
        preds = top_k(scores[0], labels, int(request.top_k or 5))
        return inference_pb2.ClassifyResponse(
            served=_served(request.model, model),
            classes=[
                inference_pb2.ClassScore(class_id=p.class_id, label=p.label, prob=p.prob)
                for p in preds
            ],
            inference_ms=ms,
        )

    def Detect(
        self, request: inference_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> inference_pb2.DetectResponse:
        try:
            from modelpack.detection import DetectorConfig, postprocess
        except ImportError:
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "this build has no detection post-processing (modelpack.detection)",
            )
        x, scale = self._prepare(request.model, request.frame, context, "detector")
        preds, model, ms = self._run(request.model, x, context)
        try:
            dets = postprocess(
                np.asarray(preds, dtype=np.float32),
                DetectorConfig.from_info(model.info),
                scale=scale,
            )
        except ValueError as e:
            context.abort(grpc.StatusCode.INTERNAL, f"{request.model} {model.version}: {e}")
        return inference_pb2.DetectResponse(
            served=_served(request.model, model),
            boxes=[
                inference_pb2.Box(
                    class_id=d.class_id,
                    label=d.label,
                    score=d.score,
                    xmin=d.box[0],
                    ymin=d.box[1],
                    xmax=d.box[2],
                    ymax=d.box[3],
                )
                for d in dets
                if d.score >= request.min_score
            ],
            inference_ms=ms,
        )

    def ListServed(
        self, request: inference_pb2.ListServedRequest, context: grpc.ServicerContext
    ) -> inference_pb2.ListServedResponse:
        served = sorted(self.host.current().items())
        try:
            start = int(request.page_token or 0)
        except ValueError:
            start = -1
        if start < 0 or request.page_size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid page_size or page_token")
        end = start + request.page_size if request.page_size else len(served)
        out = []
        for name, model in served[start:end]:
            requests, errors, _, _ = model.stats.snapshot()
            out.append(
                inference_pb2.ServedModel(
                    served=_served(name, model),
                    kind=from_str(MODEL_KIND, model.info.kind),
                    update_state=from_str(UPDATE_STATE, self.state_of(name)),
                    requests=requests,
                    errors=errors,
                    p50_ms=model.stats.percentile(50),
                    p99_ms=model.stats.percentile(99),
                )
            )
        return inference_pb2.ListServedResponse(
            models=out, next_page_token=str(end) if end < len(served) else ""
        )


def serve(
    host: ModelHost,
    socket_path: Path,
    state_of: Callable[[str], str] = lambda name: "",
    workers: int = 8,
) -> grpc.Server:
    """Start the inference service on ``unix:socket_path`` (owner and group only)."""
    socket_path = Path(socket_path).absolute()
    if len(str(socket_path)) > SOCKET_PATH_MAX:
        raise ValueError(
            f"socket path {socket_path} is longer than {SOCKET_PATH_MAX} characters (Unix limit)"
        )
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)  # left by a previous run that was killed
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference"),
        options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
    )
    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(host, state_of), server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    os.chmod(socket_path, 0o660)
    log.info("serving inference on unix:%s", socket_path)
    return server


def tensor_frame(x: np.ndarray) -> inference_pb2.Frame:
    """A Frame carrying a preprocessed float32 tensor (what a camera pipeline hands over)."""
    x = np.ascontiguousarray(x, dtype="<f4")
    return inference_pb2.Frame(tensor=inference_pb2.Tensor(shape=list(x.shape), data=x.tobytes()))


def connect(socket_path: Path) -> tuple[grpc.Channel, inference_pb2_grpc.InferenceStub]:
    channel = grpc.insecure_channel(
        f"unix:{Path(socket_path).absolute()}",
        options=[("grpc.max_send_message_length", MAX_REQUEST_BYTES)],
    )
    return channel, inference_pb2_grpc.InferenceStub(channel)
