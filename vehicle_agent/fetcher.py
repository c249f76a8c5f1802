"""python-tuf's ``FetcherInterface`` over the registry's gRPC Download call.

The Updater asks for URLs; ours look like ``grpc-metadata:/3.root.json`` and
``grpc-target:/squeezenet1.0/<sha256>.1.0.0.onnx``. A broken stream is resumed
from the last byte received, a bounded number of times.

Metadata is spooled into a temporary file in the agent's own ``STATE/tmp``, not
the system's: python-tuf's default uses ``tempfile.TemporaryFile()``, and a car's
root file system is read-only, often without a writable ``/tmp``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
    def __init__(
        self,
        client: RegistryClient,
        vehicle_id: str = "",
        max_resumes: int = 3,
        tmp_dir: Path | None = None,
    ) -> None:
        self._client = client
        self._vehicle_id = vehicle_id
        self._max_resumes = max_resumes
        self._tmp_dir = tmp_dir

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """python-tuf's ``download_file`` (same length bound), spooled in ``tmp_dir``."""
        if self._tmp_dir is not None:
            self._tmp_dir.mkdir(parents=True, exist_ok=True)
        received = 0
        with tempfile.TemporaryFile(dir=self._tmp_dir) as f:
            for chunk in self.fetch(url):
                received += len(chunk)
                if received > max_length:
                    raise exceptions.DownloadLengthMismatchError(
                        f"{url}: {received} B, more than the allowed {max_length} B"
                    )
                f.write(chunk)
            f.seek(0)
            yield f

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
                        raise exceptions.DownloadError(
                            f"{path}: chunk at {chunk.offset}, expected {offset}"
                        )
                    offset += len(chunk.data)
                    yield chunk.data
                return
            except FileNotFoundError:
                # TUF treats 404 as "no newer version" during root rotation.
                raise exceptions.DownloadHTTPError(f"{path} not found", 404) from None
            except TransportError as e:
                if e.code == "RESOURCE_EXHAUSTED":  # a message over our size limit: no retry
                    raise exceptions.DownloadLengthMismatchError(
                        f"{path}: oversized message: {e}"
                    ) from None
                resumes += 1
                if resumes > self._max_resumes or e.unreachable:  # nobody to resume from
                    raise exceptions.DownloadError(str(e)) from None
                log.info("resuming %s at byte %d after: %s", path, offset, e)
