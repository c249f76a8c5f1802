"""The publisher's side of the wire: upload a model version, list versions.

With a keystore (``keys``) the publisher signs the next image targets version
itself, where the offline targets key lives: it fetches the targets the
registry serves, checks they are signed by its own targets keys (it never
extends a list it did not sign), adds the new model and signs. The registry
only verifies and serves.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, Targets

from otawire import tls
from otawire.paths import model_target_path
from otawire.rpcerrors import describe
from otawire.v1 import ota_pb2, ota_pb2_grpc
from otawire.wire import RELEASE_KIND, all_pages, seconds, to_str
from server.models import immutable_version, model_target, validate_onnx
from server.signing.keys import Keystore
from server.signing.targets import next_release_counter, rereleased, sign_targets
from server.storage.records import ReleaseRecord

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024


class PublishError(Exception):
    """The registry refused the call or could not be reached (``refused`` tells which)."""

    def __init__(self, message: object, refused: bool = True) -> None:
        super().__init__(str(message))
        self.refused = getattr(message, "refused", refused)


class PublisherClient:
    def __init__(
        self,
        address: str,
        timeout_s: float = 300.0,
        *,
        tls_files: tls.TlsFiles | None = None,
        insecure: bool = False,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._insecure = insecure
        self._channel = tls.secure_or_insecure_channel(address, tls_files, insecure)
        self._stub = ota_pb2_grpc.PublisherStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PublisherClient:
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
        keys: Keystore | None = None,
        release_counter: int | None = None,
        allow_downgrade: bool = False,
        reason: str = "",
    ) -> ota_pb2.UploadModelResponse:
        """Validate locally (a broken file never leaves the machine), sign if ``keys``, then stream it."""
        if validate:
            validate_onnx(data, where=f"{name} {version}")
        signed = b""
        if keys is not None:
            signed = self.sign_targets_with(
                keys, data, name, version, hardware_ids, metadata_json, release_counter
            )
        header = ota_pb2.UploadHeader(
            name=name,
            version=version,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            hardware_ids=list(hardware_ids),
            metadata_json=metadata_json,
            signed_targets=signed,
            allow_downgrade=allow_downgrade,
            reason=reason,
        )

        def requests() -> Iterator[ota_pb2.UploadModelRequest]:
            yield ota_pb2.UploadModelRequest(header=header)
            for off in range(0, len(data), CHUNK_SIZE):
                chunk = data[off : off + CHUNK_SIZE]
                yield ota_pb2.UploadModelRequest(chunk=chunk)
                if progress:
                    progress(off + len(chunk), len(data))

        try:
            return self._stub.UploadModel(requests(), timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise PublishError(describe(e, self.address, self._insecure)) from None

    def upload_file(self, path: Path, name: str, version: str, **kw) -> ota_pb2.UploadModelResponse:
        return self.upload(Path(path).read_bytes(), name, version, **kw)

    # -- offline signing -------------------------------------------------------------------
    def get_metadata(self, role: str) -> bytes:
        """The latest metadata the registry serves for ``role`` (root, director-root, targets)."""
        try:
            return self._stub.GetMetadata(ota_pb2.GetMetadataRequest(role=role), timeout=30).data
        except grpc.RpcError as e:
            raise PublishError(describe(e, self.address, self._insecure)) from None

    def served_targets(self, keys: Keystore) -> bytes:
        """The registry's current targets, checked against this keystore's targets keys."""
        data = self.get_metadata("targets")
        root = Metadata[Root].from_bytes(keys.root_bytes())
        md = Metadata[Targets].from_bytes(data)
        try:
            root.signed.verify_delegate("targets", md.signed_bytes, md.signatures)
        except tuf_exc.UnsignedMetadataError as e:
            raise PublishError(
                f"the registry serves targets not signed by our targets keys: {e}"
            ) from None
        return data

    def sign_targets_with(
        self,
        keys: Keystore,
        data: bytes,
        name: str,
        version: str,
        hardware_ids: tuple[str, ...] = (),
        metadata_json: str = "",
        release_counter: int | None = None,
    ) -> bytes:
        current = self.served_targets(keys)
        served = Metadata[Targets].from_bytes(current).signed
        counter = release_counter or next_release_counter(served, name)
        target = model_target(name, version, data, hardware_ids, metadata_json, counter)
        signed = served.targets.get(target.path)
        if signed is not None and signed.hashes != target.hashes:
            # Caught here, before signing: the same refusal the registry would give, with its fix.
            versions = [
                str(t.custom.get("version", ""))
                for t in served.targets.values()
                if isinstance(t.custom, dict) and t.custom.get("name") == name
            ]
            raise PublishError(
                immutable_version(
                    name,
                    version,
                    signed.hashes.get("sha256", ""),
                    target.hashes["sha256"],
                    versions,
                )
            )
        return sign_targets(current, keys.signers("targets"), keys.expiries, [target])

    def put_metadata(self, role: str, data: bytes) -> int:
        """Hand in metadata signed offline (root, director-root, targets); return the accepted version."""
        try:
            return self._stub.PutMetadata(
                ota_pb2.PutMetadataRequest(metadata=ota_pb2.SignedMetadata(role=role, data=data)),
                timeout=30,
            ).version
        except grpc.RpcError as e:
            raise PublishError(describe(e, self.address, self._insecure)) from None

    def resign_targets(self, keys: Keystore) -> int:
        """Sign the served targets again (new keys, or fresh expiry) and hand them in."""
        current = self.served_targets_any(keys)
        return self.put_metadata(
            "targets", sign_targets(current, keys.signers("targets"), keys.expiries)
        )

    def served_targets_any(self, keys: Keystore) -> bytes:
        """The served targets, accepted if signed by any targets key this keystore ever listed."""
        try:
            return self.served_targets(keys)
        except PublishError:
            # After a targets rotation the served version is signed by the old key;
            # its content is still ours if it verifies under an earlier root.
            data = self.get_metadata("targets")
            md = Metadata[Targets].from_bytes(data)
            for root_bytes in keys.root_history():
                try:
                    Metadata[Root].from_bytes(root_bytes).signed.verify_delegate(
                        "targets", md.signed_bytes, md.signatures
                    )
                    return data
                except tuf_exc.UnsignedMetadataError:
                    continue
            raise

    def rerelease(self, keys: Keystore, name: str, version: str) -> int:
        """Sign an already published version again as the newest release (the way back to it)."""
        current = self.served_targets(keys)
        tf = rereleased(
            Metadata[Targets].from_bytes(current).signed, model_target_path(name, version)
        )
        self.put_metadata(
            "targets", sign_targets(current, keys.signers("targets"), keys.expiries, [tf])
        )
        return int(tf.custom["release_counter"])

    def assign(self, vehicle_id: str, name: str, version: str) -> None:
        try:
            self._stub.AssignModel(
                ota_pb2.AssignModelRequest(vehicle_id=vehicle_id, name=name, version=version),
                timeout=30,
            )
        except grpc.RpcError as e:
            raise PublishError(describe(e, self.address, self._insecure)) from None

    def release(self, name: str, version: str, scope: str = "fleet", reason: str = "") -> None:
        """Send a published version to ``scope``: "fleet", "tag:K=V" or "vehicle:ID"."""
        try:
            self._stub.ReleaseModel(
                ota_pb2.ReleaseModelRequest(name=name, version=version, scope=scope, reason=reason),
                timeout=30,
            )
        except grpc.RpcError as e:
            raise PublishError(f"{e.code().name}: {e.details()}") from None

    def releases(self, name: str = "", page_size: int = 100) -> list[ReleaseRecord]:
        """The release log (of ``name``), oldest first, fetched a page at a time."""

        def page(token: str) -> tuple[list[ReleaseRecord], str]:
            req = ota_pb2.ListReleasesRequest(name=name, page_size=page_size, page_token=token)
            try:
                resp = self._stub.ListReleases(req, timeout=30)
            except grpc.RpcError as e:
                raise PublishError(f"{e.code().name}: {e.details()}") from None
            records = [
                ReleaseRecord(
                    name=r.name,
                    version=r.version,
                    kind=to_str(RELEASE_KIND, r.kind),
                    scope=r.scope,
                    actor=r.actor,
                    reason=r.reason,
                    at=seconds(r.create_time),
                )
                for r in resp.releases
            ]
            return records, resp.next_page_token

        return all_pages(page)

    def list(self, name: str = "", page_size: int = 100) -> list[ota_pb2.ModelVersion]:
        """Every published version (of ``name``), fetched a page at a time."""

        def page(token: str) -> tuple[list[ota_pb2.ModelVersion], str]:
            req = ota_pb2.ListModelsRequest(name=name, page_size=page_size, page_token=token)
            try:
                resp = self._stub.ListModels(req, timeout=30)
            except grpc.RpcError as e:
                raise PublishError(describe(e, self.address, self._insecure)) from None
            return list(resp.versions), resp.next_page_token

        return all_pages(page)
