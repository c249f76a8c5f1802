"""python-tuf's ``FetcherInterface`` over the registry's gRPC Download call.

The Updater asks for URLs; ours look like ``grpc-metadata:/3.root.json`` and
``grpc-target:/squeezenet1.0/<sha256>.1.0.0.onnx``. A broken stream is resumed
from the last byte received, a bounded number of times.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from otawire.paths import director_path
from otawire.v1 import ota_pb2
from vehicle_agent.transport import RegistryClient, TransportError

log = logging.getLogger(__name__)

METADATA_URL = "grpc-metadata:/"
TARGET_URL = "grpc-target:/"
DIRECTOR_URL = "grpc-director:/"


class GrpcFetcher(FetcherInterface):
    def __init__(self, client: RegistryClient, vehicle_id: str = "", max_resumes: int = 3) -> None:
        self._client = client
        self._vehicle_id = vehicle_id
        self._max_resumes = max_resumes

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url.startswith(METADATA_URL):
            kind, path = ota_pb2.FILE_KIND_METADATA, url[len(METADATA_URL) :]
        elif url.startswith(TARGET_URL):
            kind, path = ota_pb2.FILE_KIND_TARGET, url[len(TARGET_URL) :]
        elif url.startswith(DIRECTOR_URL):  # security (issue 4): the vehicle's director chain
            kind, path = ota_pb2.FILE_KIND_METADATA, director_path(url[len(DIRECTOR_URL) :])
        else:
            raise exceptions.DownloadError(f"unsupported URL {url!r}")
        offset = 0
        resumes = 0
        while True:
            try:
                for chunk in self._client.download(kind, path, offset, vehicle_id=self._vehicle_id):
                    if chunk.offset != offset:
                        raise exceptions.DownloadError(f"{path}: chunk at {chunk.offset}, expected {offset}")
                    offset += len(chunk.data)
                    yield chunk.data
                return
            except FileNotFoundError:
                # TUF treats 404 as "no newer version" during root rotation.
                raise exceptions.DownloadHTTPError(f"{path} not found", 404) from None
            except TransportError as e:
                if e.code == "RESOURCE_EXHAUSTED":  # a message over our size limit: no retry
                    raise exceptions.DownloadLengthMismatchError(f"{path}: oversized message: {e}") from None
                resumes += 1
                if resumes > self._max_resumes:
                    raise exceptions.DownloadError(str(e)) from None
                log.info("resuming %s at byte %d after: %s", path, offset, e)
