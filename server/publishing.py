"""Publishing: a model version in, checked, stored, signed as a TUF target, encoded.

Also the publisher's hand-ins of metadata signed offline (root, director root,
targets). Free of gRPC: ``server/service.py`` adapts it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from tuf.api.metadata import Targets

from otawire.paths import model_target_path, model_version_name, parse_model_version_name
from server import encodings
from server.director import Director
from server.errors import AlreadyExists, InvalidArgument, NotFound, TooLarge, Unsigned
from server.integrity import BlobGuard
from server.models import (
    MAX_MODEL_BYTES,
    SemverKey,
    check_name,
    immutable_version,
    model_info_json,
    semver_key,
    signed_json,
    validate_onnx,
)
from server.releases import Releases
from server.signing.errors import KeystoreError, TufError
from server.signing.expiry import utcnow
from server.signing.repository import TufRepository
from server.signing.targets import next_release_counter, rereleased, target_custom
from server.staging import Staging
from server.storage.ports import BlobStore, EncodingStore, ModelStore, StorageError
from server.storage.records import ModelRecord

log = logging.getLogger(__name__)


def _token_key(token: str) -> tuple[str, SemverKey]:
    """The sort key a page token stands for; InvalidArgument when it is not one of ours."""
    try:
        parsed = parse_model_version_name(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if parsed is None:
        raise InvalidArgument(
            f"page_token {token!r} is not a next_page_token of ListModels; start without one"
        )
    return parsed[0], semver_key(parsed[1])


class PublishStore(ModelStore, EncodingStore, Protocol):
    """The ports publishing writes to: the version, and (via encodings) its encodings."""


class Publisher:
    """Publishes model versions as signed TUF targets; accepts metadata signed offline.

    Publishing stores and signs; it sends nothing to vehicles (``server/releases.py``).
    Uploads are staged apart from the blob store and committed only once accepted.
    """

    def __init__(
        self,
        store: PublishStore,
        blobs: BlobStore,
        tuf: TufRepository,
        director: Director,
        staging: Staging,
        releases: Releases,
        guard: BlobGuard,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.tuf = tuf
        self.director = director
        self.staging = staging
        self.releases = releases
        self.guard = guard

    def publish_stream(
        self,
        name: str,
        version: str,
        length: int,
        sha256: str,
        chunks: Iterable[bytes],
        hardware_ids: Iterable[str] = (),
        metadata_json: str = "",
        signed_targets: bytes = b"",
        allow_downgrade: bool = False,
        reason: str = "",
        actor: str = "",
    ) -> ModelRecord:
        """Stage an upload, check it, then publish it; the staged file never outlives the call.

        ``signed_targets`` is the next image targets metadata listing this
        model, signed offline by the publisher; without it the registry signs
        only if it holds the targets key (development keystores). A version
        below the highest published needs ``allow_downgrade`` and a ``reason``,
        recorded with ``actor`` (who asked) in the release log.
        """
        if length > MAX_MODEL_BYTES:
            raise TooLarge(f"model is {length} B; the limit is {MAX_MODEL_BYTES} B")
        h = hashlib.sha256()
        received = 0
        # Removed on every way out: accepted (then already moved into the store), refused,
        # or the stream cancelled (the request iterator raises here).
        with self.staging.file() as (fd, tmp):
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    received += len(chunk)
                    if received > length:
                        raise InvalidArgument(f"upload sent more than the announced {length} B")
                    h.update(chunk)
                    f.write(chunk)
            if received != length:
                raise InvalidArgument(f"upload truncated: received {received} of {length} B")
            if sha256 and h.hexdigest() != sha256:
                raise InvalidArgument(
                    f"upload corrupted: sha256 {h.hexdigest()} != announced {sha256}"
                )
            downgrade = (allow_downgrade, reason, actor)
            return self._publish_file(
                name,
                version,
                tmp,
                h.hexdigest(),
                length,
                hardware_ids,
                metadata_json,
                signed_targets,
                downgrade,
            )

    def publish_bytes(
        self,
        name: str,
        version: str,
        data: bytes,
        hardware_ids: Iterable[str] = (),
        metadata_json: str = "",
        signed_targets: bytes = b"",
        **kw: Any,
    ) -> ModelRecord:
        """``kw``: allow_downgrade, reason, actor (see ``publish_stream``)."""
        sha = hashlib.sha256(data).hexdigest()
        return self.publish_stream(
            name, version, len(data), sha, [data], hardware_ids, metadata_json, signed_targets, **kw
        )

    def _commit(self, staged: Path, sha256: str) -> None:
        """Move an accepted upload into the content store; it was hashed on the way in."""
        self.blobs.put_file(staged, sha256)
        self.guard.trust(sha256)

    def _publish_file(
        self,
        name: str,
        version: str,
        path: Path,
        sha256: str,
        length: int,
        hardware_ids: Iterable[str],
        metadata_json: str,
        signed_targets: bytes = b"",
        downgrade: tuple[bool, str, str] = (False, "", ""),
    ) -> ModelRecord:
        allow_downgrade, reason, actor = downgrade
        check_name(name)
        semver_key(version)
        existing = self.store.get_model(name, version)
        if existing is not None:
            if existing.sha256 == sha256:
                if not self.blobs.exists(
                    sha256
                ):  # moved aside as bad (or lost): these bytes restore it
                    self._commit(path, sha256)
                    log.warning(
                        "%s %s: blob %s restored by a re-upload", name, version, sha256[:12]
                    )
                return existing  # idempotent re-publish of the same bytes
            raise AlreadyExists(
                immutable_version(
                    name,
                    version,
                    existing.sha256,
                    sha256,
                    [r.version for r in self.store.list_models(name)],
                )
            )
        self.releases.check_order(name, version, allow_downgrade, reason)
        model = validate_onnx(path.read_bytes(), where=f"{name} {version}")
        info = model_info_json(model, metadata_json)
        hw = tuple(sorted(set(hardware_ids)))
        target_path = model_target_path(name, version)
        # Nothing enters the content store before it is accepted (signed): see _commit.
        if signed_targets:
            custom = self._accept_signed_target(
                signed_targets, target_path, name, version, sha256, length, path
            )
            hw = tuple(custom.get("hardware_ids") or ())
            info = signed_json(custom.get("model_info_json"))
        elif self.tuf.can_sign("targets"):
            counter = next_release_counter(self.tuf.latest("targets").signed, name)
            self._commit(path, sha256)  # before the signature naming it: never served missing
            self.tuf.add_target(
                target_path, length, sha256, target_custom(name, version, hw, info, counter)
            )
        else:
            raise Unsigned(
                f"{name} {version}: the targets key is offline and no signed targets came with the upload; "
                "publish with `ota publish --keys KEYS` to sign on the publisher's side",
            )
        rec = ModelRecord(
            name=name,
            version=version,
            sha256=sha256,
            length=length,
            target_path=target_path,
            hardware_ids=hw,
            metadata_json=json.dumps(info, sort_keys=True),
            published_at=utcnow().isoformat().replace("+00:00", "Z"),
        )
        try:
            self.store.add_model(rec)
        except StorageError as e:
            raise AlreadyExists(str(e)) from None
        if allow_downgrade:
            self.releases.record("downgrade", name, version, actor=actor, reason=reason)
        log.info(
            "published %s %s (%d B, sha256 %s); offered to no vehicle until released",
            name,
            version,
            length,
            sha256[:12],
        )
        for enc in encodings.precompute(self.store, self.blobs, rec):
            self.guard.trust(enc.blob_sha256)
        return rec

    def _accept_signed_target(
        self,
        signed: bytes,
        target_path: str,
        name: str,
        version: str,
        sha256: str,
        length: int,
        staged: Path,
    ) -> dict:
        def check(targets: Targets) -> None:
            tf = targets.targets.get(target_path)
            if tf is None:
                raise TufError(f"the signed targets do not list {target_path}")
            custom = tf.custom or {}
            if tf.hashes.get("sha256") != sha256 or tf.length != length:
                raise TufError(
                    f"the signed {target_path} is not the uploaded bytes (sha256/length differ)"
                )
            if (custom.get("name"), custom.get("version")) != (name, version):
                raise TufError(
                    f"the signed {target_path} names {custom.get('name')} {custom.get('version')}"
                )
            for path, other in targets.targets.items():
                if path != target_path and not self.blobs.exists(other.hashes.get("sha256", "")):
                    raise TufError(
                        f"the signed targets list {path}, which this registry does not hold"
                    )
            # Every check passed: commit the blob last, just before the metadata naming it is stored.
            self._commit(staged, sha256)

        try:
            md = self.tuf.put_targets(signed, check)
        except (TufError, KeystoreError) as e:
            raise Unsigned(f"signed targets refused: {e}") from None
        return dict(md.signed.targets[target_path].custom or {})

    def rerelease(self, name: str, version: str) -> int:
        """Sign ``name`` ``version`` again with the highest release counter (here: targets key held
        locally; offline: ``ota rerelease --keys``), so that vehicles may go back to it."""
        rec = self.store.get_model(name, version)
        if rec is None:
            raise NotFound(f"{name} {version} is not published")
        if not self.tuf.can_sign("targets"):
            raise Unsigned(
                "the targets key is offline: re-release with `ota rerelease --keys KEYS`"
            )
        targets = self.tuf.latest("targets").signed
        tf = rereleased(targets, rec.target_path)
        targets.targets[tf.path] = tf
        self.tuf.sign_new_targets(targets)
        counter = int(tf.custom["release_counter"])
        self.releases.record("rerelease", name, version, reason=f"release counter {counter}")
        return counter

    # -- metadata signed offline ---------------------------------------------------------------
    def get_metadata(self, role: str) -> bytes:
        try:
            if role == "director-root":
                return self.director.repo("-").get_file("root.json")
            if role in ("root", "targets"):
                return self.tuf.get_file(f"{role}.json")
        except (FileNotFoundError, TufError):
            pass
        raise NotFound(f"no metadata for role {role!r} (use root, targets or director-root)")

    def put_metadata(self, role: str, data: bytes) -> int:
        """Accept the next root/director-root/targets version signed offline; return its version."""
        try:
            if role == "root":
                return self.tuf.put_root(data).signed.version
            if role == "director-root":
                return self.director.put_root(data)
            if role == "targets":

                def check(targets: Targets) -> None:
                    missing = [
                        p
                        for p, t in targets.targets.items()
                        if not self.blobs.exists(t.hashes.get("sha256", ""))
                    ]
                    if missing:
                        raise TufError(
                            f"the signed targets list {missing}, which this registry does not hold"
                        )

                return self.tuf.put_targets(data, check).signed.version
        except (TufError, KeystoreError) as e:
            raise Unsigned(f"{role} metadata refused: {e}") from None
        raise InvalidArgument(f"cannot hand in metadata for role {role!r}")

    def list_versions(self, name: str | None = None) -> list[ModelRecord]:
        recs = self.store.list_models(name or None)
        return sorted(recs, key=lambda r: (r.name, semver_key(r.version)))

    def list_page(
        self, name: str | None, page_size: int, page_token: str
    ) -> tuple[list[ModelRecord], str]:
        """One page of ``list_versions`` and the token of the next ("" on the last page).

        The token is the resource name of the page's last version, so a page
        starts after it even when versions were added or removed in between.
        """
        if page_size < 0:
            raise InvalidArgument(f"page_size {page_size} is negative; use 0 for everything")
        recs = self.list_versions(name)
        if page_token:
            after = _token_key(page_token)
            recs = [r for r in recs if (r.name, semver_key(r.version)) > after]
        if not page_size or len(recs) <= page_size:
            return recs, ""
        page = recs[:page_size]
        last = page[-1]
        token = base64.urlsafe_b64encode(
            model_version_name(last.name, last.version).encode()
        ).decode()
        return page, token
