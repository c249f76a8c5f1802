"""The TUF keystore: ed25519 keys per role and the initial signed root.

``ota keys init`` creates a directory holding one private key per top-level
role (PEM, PKCS#8, mode 0600), their public halves, and ``root.json``: the
first root metadata, signed by the root key. ``root.json`` is what a vehicle
is provisioned with at the factory; it is public. The private keys are not:
root and targets keys belong offline (a separate issue hardens this split).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from modelpack.fsio import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

ROLES = ("root", "targets", "snapshot", "timestamp")
ROOT_FILE = "root.json"
KEYS_INDEX = "keys.json"


class KeystoreError(Exception):
    """The keystore is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class Expiries:
    """How long each role's metadata stays valid (TUF's freshness guarantee)."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=30)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def for_role(self, role: str) -> timedelta:
        return getattr(self, role)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class Keystore:
    """A directory of role keys and the initial root metadata."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        index = self.path / KEYS_INDEX
        if not index.exists():
            raise KeystoreError(f"no keystore at {self.path} (missing {KEYS_INDEX}); run `ota keys init --keys {self.path}`")
        self._index: dict[str, list[str]] = json.loads(index.read_text())["roles"]

    @classmethod
    def init(cls, path: Path, expiries: Expiries = Expiries(), force: bool = False) -> "Keystore":
        """Generate one ed25519 key per role and sign root version 1."""
        path = Path(path)
        if (path / KEYS_INDEX).exists() and not force:
            raise KeystoreError(f"a keystore already exists at {path}; refusing to overwrite it")
        path.mkdir(parents=True, exist_ok=True)
        index: dict[str, list[str]] = {}
        signers: dict[str, CryptoSigner] = {}
        for role in ROLES:
            signer = CryptoSigner.generate_ed25519()
            keyid = signer.public_key.keyid
            atomic_write_bytes(path / f"{role}-{keyid[:12]}.pem", signer.private_bytes, mode=0o600)
            atomic_write_text(path / f"{role}-{keyid[:12]}.pub.json", json.dumps(signer.public_key.to_dict(), indent=1))
            index[role] = [keyid]
            signers[role] = signer

        root = Root(expires=utcnow() + expiries.root, consistent_snapshot=True)
        for role in ROLES:
            root.add_key(signers[role].public_key, role)
        md = Metadata(root)
        md.sign(signers["root"])
        atomic_write_bytes(path / ROOT_FILE, md.to_bytes(JSONSerializer(compact=False)))
        atomic_write_text(path / KEYS_INDEX, json.dumps({"roles": index}, indent=1))
        log.info("created keystore at %s", path)
        return cls(path)

    def keyids(self, role: str) -> list[str]:
        return list(self._index.get(role, []))

    def signers(self, role: str) -> list[CryptoSigner]:
        """Load the private keys of ``role``; raise if none are present."""
        out = []
        for keyid in self.keyids(role):
            pem = self.path / f"{role}-{keyid[:12]}.pem"
            pub = self.path / f"{role}-{keyid[:12]}.pub.json"
            if not pem.exists():
                continue  # an offline key: not on this machine
            public = SSlibKey.from_dict(keyid, json.loads(pub.read_text()))
            out.append(CryptoSigner(load_pem_private_key(pem.read_bytes(), password=None), public))
        if not out:
            raise KeystoreError(f"no private key for role {role!r} in {self.path}")
        return out

    def root_bytes(self) -> bytes:
        return (self.path / ROOT_FILE).read_bytes()
