"""Image targets metadata as the publisher signs it: the next version, release counters.

Runs where the targets key lives (the publisher's machine, or a development
registry); nothing here touches storage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from server.signing.errors import TufError
from server.signing.expiry import Expiries, utcnow

_SERIALIZER = JSONSerializer(compact=True)


def target_custom(
    name: str, version: str, hardware_ids: Iterable[str], info: dict[str, Any], release_counter: int
) -> dict[str, Any]:
    """The custom fields of a model target, as the image repository signs them."""
    # TUF's canonical JSON has no floats, so ModelInfo travels as a signed JSON string.
    return {
        "name": name,
        "version": version,
        "hardware_ids": sorted(set(hardware_ids)),
        "release_counter": int(release_counter),
        "model_info_json": json.dumps(info, sort_keys=True),
    }


def sign_targets(
    current: bytes | None,
    signers: Sequence[Signer],
    expires_in: Expiries,
    add: Sequence[TargetFile] = (),
    now: datetime | None = None,
) -> bytes:
    """Next version of the targets metadata with ``add`` in it, signed by ``signers``.

    Runs where the targets key lives: on the publisher's machine (``ota publish
    --keys``) or, for development keystores, inside the registry.
    """
    md: Metadata[Targets] = Metadata.from_bytes(current) if current else Metadata(Targets())
    for tf in add:
        existing = md.signed.targets.get(tf.path)
        if existing is not None and (existing.hashes != tf.hashes or existing.length != tf.length):
            raise TufError(f"target {tf.path} is already signed with other bytes")
        md.signed.targets[tf.path] = tf
    if current:
        md.signed.version += 1
    md.signed.expires = (now or utcnow()) + expires_in.targets
    md.signatures.clear()
    for s in signers:
        md.sign(s, append=True)
    return md.to_bytes(_SERIALIZER)


def next_release_counter(targets: Targets, name: str) -> int:
    """One more than the highest release counter signed for ``name`` so far."""
    counters = [
        int((tf.custom or {}).get("release_counter", 0))
        for tf in targets.targets.values()
        if (tf.custom or {}).get("name") == name
    ]
    return max(counters, default=0) + 1


def rereleased(targets: Targets, path: str) -> TargetFile:
    """The target at ``path`` with a release counter above every one signed for its model.

    The only way back to an older model: vehicles never install a lower release
    counter, so the image repository signs the old bytes again as the newest release.
    """
    tf = targets.targets.get(path)
    if tf is None:
        raise TufError(f"{path} is not a signed target")
    custom = dict(tf.custom or {})
    custom["release_counter"] = next_release_counter(targets, str(custom.get("name", "")))
    return TargetFile(tf.length, dict(tf.hashes), tf.path, unrecognized_fields={"custom": custom})
