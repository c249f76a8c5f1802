"""The publisher's side of the wire: upload a model version, list versions."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from ota.v1 import ota_pb2, ota_pb2_grpc
from server.registry import validate_onnx

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024


class PublishError(Exception):
    """The registry refused the upload or could not be reached."""


class PublisherClient:
    def __init__(self, address: str, timeout_s: float = 300.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address)
        self._stub = ota_pb2_grpc.PublisherStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "PublisherClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(
        self,
        data: bytes,
        name: str,
        version: str,
        hardware_ids: tuple[str, ...] = (),
        metadata_json: str = "",
        progress: Callable[[int, int], None] | None = None,
        validate: bool = True,
    ) -> ota_pb2.UploadResponse:
        """Validate locally (a broken file never leaves the machine), then stream it."""
        if validate:
            validate_onnx(data, where=f"{name} {version}")
        header = ota_pb2.UploadHeader(
            name=name,
            version=version,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            hardware_ids=list(hardware_ids),
            metadata_json=metadata_json,
        )

        def requests() -> Iterator[ota_pb2.UploadRequest]:
            yield ota_pb2.UploadRequest(header=header)
            for off in range(0, len(data), CHUNK_SIZE):
                chunk = data[off : off + CHUNK_SIZE]
                yield ota_pb2.UploadRequest(chunk=chunk)
                if progress:
                    progress(off + len(chunk), len(data))

        try:
            return self._stub.UploadModel(requests(), timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise PublishError(f"{e.code().name}: {e.details()}") from None

    def upload_file(self, path: Path, name: str, version: str, **kw) -> ota_pb2.UploadResponse:
        return self.upload(Path(path).read_bytes(), name, version, **kw)

    def list(self, name: str = "") -> list[ota_pb2.ModelVersion]:
        try:
            return list(self._stub.ListModels(ota_pb2.ListModelsRequest(name=name), timeout=30).versions)
        except grpc.RpcError as e:
            raise PublishError(f"{e.code().name}: {e.details()}") from None
