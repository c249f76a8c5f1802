"""The vehicle version manifest (Uptane): what this vehicle runs, signed by its key.

Sent at every check-in, before the director's metadata is read, so that the
director instructs from facts it can verify: the vehicle id and hardware id,
the installed images (hashes, release counters), a strictly increasing counter
plus a nonce against replay, and any attacks the agent detected since the last
accepted manifest. It is signed with the vehicle's TLS key (ECDSA P-256); the
director checks the signature against the vehicle certificate issued by the
fleet CA.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field

from otawire import tls
from otawire.v1 import ota_pb2


@dataclass(frozen=True)
class InstalledImage:
    name: str
    version: str
    sha256: str
    release_counter: int


@dataclass(frozen=True)
class VersionManifest:
    vehicle_id: str
    hardware_id: str
    counter: int
    installed: tuple[InstalledImage, ...] = ()
    attacks: tuple[str, ...] = ()
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_bytes(self) -> bytes:
        body = asdict(self)
        body["installed"] = [asdict(i) for i in self.installed]
        body["attacks"] = list(self.attacks)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_manifest(manifest: VersionManifest, files: tls.TlsFiles) -> ota_pb2.SignedManifest:
    """Sign the manifest bytes with the vehicle key; ship the certificate along."""
    _, cert, key = files.read()
    body = manifest.to_bytes()
    return ota_pb2.SignedManifest(signed=body, signature=tls.sign(key, body), certificate_pem=cert)
