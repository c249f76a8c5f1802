"""Resumable downloads over real gRPC: a cut stream resumes at its offset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tuf.api.metadata import TargetFile

from vehicle_agent.download import DownloadFailed, download_target
from vehicle_agent.transport import RegistryClient, TransportError


class CuttingClient(RegistryClient):
    """A real client whose link drops after ``cut_after`` bytes (then stays up)."""

    def __init__(self, address: str, cut_after: int, **kw) -> None:
        super().__init__(address, **kw)
        self.cut_after = cut_after
        self.cuts = 0

    def download(self, *args, **kwargs) -> Iterator:
        received = 0
        for chunk in super().download(*args, **kwargs):
            if self.cuts == 0 and received + len(chunk.data) > self.cut_after:
                self.cuts += 1
                raise TransportError(f"link dropped after {received} B")
            received += len(chunk.data)
            yield chunk


def _publish(registry_server, data: bytes) -> tuple[TargetFile, str]:
    rec = registry_server.registry.publish_bytes("squeezenet1.0", "1.0.0", data)
    target = TargetFile(length=rec.length, hashes={"sha256": rec.sha256}, path=rec.target_path)
    return target, f"squeezenet1.0/{rec.sha256}.1.0.0.onnx"


def test_cut_download_resumes_from_offset_within_one_call(
    registry_server, squeezenet_bytes, tmp_path
) -> None:
    target, path = _publish(registry_server, squeezenet_bytes)
    client = CuttingClient(
        registry_server.address, cut_after=1_000_000, tls_files=registry_server.vehicle_tls()
    )

    result = download_target(client, path, target, tmp_path)

    assert result.path.read_bytes() == squeezenet_bytes
    served = [d for d in registry_server.registry.downloads if d.kind == "target"]
    assert len(served) == 2 and served[0].offset == 0
    assert 0 < served[1].offset <= 1_000_000
    # Resumed, not restarted: the second request asked for the rest only.
    assert served[1].bytes_sent == len(squeezenet_bytes) - served[1].offset
    assert result.bytes_fetched == len(squeezenet_bytes)
    client.close()


def test_partial_file_survives_a_restart_and_is_resumed(
    registry_server, squeezenet_bytes, tmp_path
) -> None:
    target, path = _publish(registry_server, squeezenet_bytes)
    cutting = CuttingClient(
        registry_server.address, cut_after=2_000_000, tls_files=registry_server.vehicle_tls()
    )
    with pytest.raises(DownloadFailed, match="gave up"):
        download_target(cutting, path, target, tmp_path, max_attempts=1)
    part = tmp_path / f"{target.hashes['sha256']}.part"
    kept = part.stat().st_size
    assert 0 < kept <= 2_000_000

    with RegistryClient(
        registry_server.address, tls_files=registry_server.vehicle_tls()
    ) as fresh:  # the agent after a restart
        result = download_target(fresh, path, target, tmp_path)

    assert result.resumed_from == kept
    assert result.bytes_fetched == len(squeezenet_bytes) - kept
    assert result.path.read_bytes() == squeezenet_bytes
    assert registry_server.registry.downloads[-1].offset == kept
    cutting.close()


class LyingMirror(RegistryClient):
    """A real client to a registry that ignores the range asked for and streams the whole file."""

    def download(self, kind, path, offset, max_bytes=0, **kw) -> Iterator:
        yield from super().download(kind, path, offset, max_bytes=0, **kw)


def test_registry_sending_more_than_signed_length_is_refused(
    registry_server, squeezenet_bytes, tmp_path
) -> None:
    target, path = _publish(registry_server, squeezenet_bytes)
    short = TargetFile(
        length=1000, hashes=target.hashes, path=target.path
    )  # what a lying mirror would face
    with (
        LyingMirror(registry_server.address, tls_files=registry_server.vehicle_tls()) as client,
        pytest.raises(DownloadFailed, match="more than the signed length 1000 B") as e,
    ):
        download_target(client, path, short, tmp_path)
    # The bound fired on the first oversized chunk, before anything past it was kept (the
    # final hash check would also refuse, but only after writing the whole stream to disk).
    assert e.value.tampered
    part = tmp_path / f"{target.hashes['sha256']}.part"
    assert not part.exists() or part.stat().st_size <= 1000
