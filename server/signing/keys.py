"""The keystore: ed25519 keys per role, thresholds, and both repositories' roots.

``ota keys init`` creates a directory holding the private keys (PEM, PKCS#8,
mode 0600), their public halves, and two root metadata chains, each signed by
the same offline root keys (2-of-3 by default):

- ``root.json``: the **image repository** root (roles root, targets, snapshot,
  timestamp), what exists and may be installed;
- ``director-root.json``: the **director** root, whose targets, snapshot and
  timestamp roles all belong to one online ``director`` key that signs
  per-vehicle instructions (Uptane's split).

Both files are public and are what a vehicle is provisioned with. Every root
version ever signed is kept under ``history/`` so that a registry started from
a rotated keystore can still serve the chain a vehicle walks.

Root and targets keys are **offline**: ``ota keys online`` exports a copy that
holds only the snapshot, timestamp and director private keys, for the registry.
``rotate`` and ``revoke`` sign a new root version with the old root threshold
(and the new one), so vehicles follow the rotation through TUF's root chain.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from modelpack.fsio import atomic_write_bytes, atomic_write_text
from server.signing.errors import KeystoreError
from server.signing.expiry import ROLES, Expiries, utcnow
from server.signing.targets import sign_targets

log = logging.getLogger(__name__)

ALL_ROLES = (*ROLES, "director")
ONLINE_ROLES = ("snapshot", "timestamp", "director")
ROOT_FILE = "root.json"
DIRECTOR_ROOT_FILE = "director-root.json"
KEYS_INDEX = "keys.json"
TARGETS_FILE = "targets.json"
HISTORY = "history"
# Which keystore role signs each role of each repository.
REPO_ROLES: dict[str, dict[str, str]] = {
    "image": {r: r for r in ROLES},
    "director": {
        "root": "root",
        "targets": "director",
        "snapshot": "director",
        "timestamp": "director",
    },
}
REPO_ROOT_FILES = {"image": ROOT_FILE, "director": DIRECTOR_ROOT_FILE}


DEFAULT_EXPIRIES = Expiries()
_PRETTY = JSONSerializer(compact=False)


class Keystore:
    """A directory of role keys, thresholds, and the signed root chains."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        index = self.path / KEYS_INDEX
        if not index.exists():
            raise KeystoreError(
                f"no keystore at {self.path} (missing {KEYS_INDEX}); run `ota keys init --keys {self.path}`"
            )
        raw = json.loads(index.read_text())
        self._index: dict[str, list[str]] = raw["roles"]
        self._thresholds: dict[str, int] = raw.get("thresholds", {})
        self._signers: dict[str, tuple[Path, CryptoSigner]] = {}
        self.expiries = Expiries.from_dict(raw.get("expiries", {}))

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: Path,
        expiries: Expiries = DEFAULT_EXPIRIES,
        force: bool = False,
        root_keys: int = 3,
        root_threshold: int = 2,
    ) -> Keystore:
        """Generate keys (``root_keys`` root keys, one per other role) and sign both roots v1."""
        path = Path(path)
        if (path / KEYS_INDEX).exists() and not force:
            raise KeystoreError(f"a keystore already exists at {path}; refusing to overwrite it")
        if not 1 <= root_threshold <= root_keys:
            raise KeystoreError(
                f"root threshold {root_threshold} must be between 1 and the number of keys {root_keys}"
            )
        if force and path.exists():
            for old in [*path.glob("*.pem"), *path.glob("*.pub.json")]:
                old.unlink()
            shutil.rmtree(path / HISTORY, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        index: dict[str, list[str]] = {}
        for role in ALL_ROLES:
            index[role] = [
                _write_new_key(path, role) for _ in range(root_keys if role == "root" else 1)
            ]
        thresholds = {role: (root_threshold if role == "root" else 1) for role in ALL_ROLES}
        _write_index(path, index, thresholds, expiries)
        ks = cls(path)
        for repo in REPO_ROLES:
            root = Root(expires=utcnow() + expiries.root, consistent_snapshot=True)
            for tuf_role, ks_role in REPO_ROLES[repo].items():
                for keyid in index[ks_role]:
                    root.add_key(ks.public_key(keyid), tuf_role)
                root.roles[tuf_role].threshold = thresholds[ks_role]
            md = Metadata(root)
            for signer in ks.signers("root"):
                md.sign(signer, append=True)
            ks._store_root(repo, md)
        # An empty targets v1, signed now while the targets key is at hand, so
        # that a registry holding only online keys can start serving at once.
        atomic_write_bytes(path / TARGETS_FILE, sign_targets(None, ks.signers("targets"), expiries))
        log.info("created keystore at %s", path)
        return ks

    # -- reading ------------------------------------------------------------------------------
    def keyids(self, role: str) -> list[str]:
        return list(self._index.get(role, []))

    def threshold(self, role: str) -> int:
        return int(self._thresholds.get(role, 1))

    def role_of(self, keyid: str) -> str:
        for role, ids in self._index.items():
            if keyid in ids or any(k.startswith(keyid) for k in ids):
                return role
        raise KeystoreError(f"no key {keyid!r} in {self.path}")

    def _key_file(self, role: str, keyid: str, suffix: str) -> Path:
        return self.path / f"{role}-{keyid[:12]}{suffix}"

    def _find(self, keyid: str, suffix: str) -> Path | None:
        # By file name, not the index read at start-up: a registry picks up
        # online keys copied in after a rotation without a restart.
        found = sorted(self.path.glob(f"*-{keyid[:12]}{suffix}"))
        return found[0] if found else None

    def public_key(self, keyid: str) -> SSlibKey:
        pub = self._find(keyid, ".pub.json")
        if pub is None:
            raise KeystoreError(f"no public key {keyid[:12]} in {self.path}")
        return SSlibKey.from_dict(keyid, json.loads(pub.read_text()))

    def signer_for(self, keyid: str) -> CryptoSigner | None:
        """The private key with this id, or None when it is not on this machine (offline)."""
        # A key id names one key: parsed once, kept while its file is there (one stat,
        # not a directory scan; a rotated-out key is deleted and so no longer served).
        held = self._signers.get(keyid)
        if held is not None and held[0].exists():
            return held[1]
        self._signers.pop(keyid, None)
        pem = self._find(keyid, ".pem")
        if pem is None:
            return None
        signer = CryptoSigner(
            load_pem_private_key(pem.read_bytes(), password=None), self.public_key(keyid)
        )
        self._signers[keyid] = (pem, signer)
        return signer

    def signers(self, role: str) -> list[CryptoSigner]:
        """The private keys of ``role`` present here; raise unless they reach its threshold."""
        out = [s for s in (self.signer_for(k) for k in self.keyids(role)) if s is not None]
        if len(out) < self.threshold(role):
            have = (
                "no private key"
                if not out
                else f"only {len(out)} of the {self.threshold(role)} private keys needed"
            )
            raise KeystoreError(
                f"{have} for role {role!r} in {self.path} (offline keys live elsewhere)"
            )
        return out

    def has_private(self, role: str) -> bool:
        try:
            self.signers(role)
            return True
        except KeystoreError:
            return False

    def root_bytes(self, repo: str = "image") -> bytes:
        return (self.path / REPO_ROOT_FILES[repo]).read_bytes()

    def director_root_bytes(self) -> bytes:
        return self.root_bytes("director")

    def initial_targets(self) -> bytes | None:
        """The empty targets v1 signed at ``init`` (what an online-only registry starts from)."""
        f = self.path / TARGETS_FILE
        return f.read_bytes() if f.exists() else None

    def root_history(self, repo: str = "image") -> list[bytes]:
        """Every root version of ``repo`` signed so far, oldest first."""
        stem = REPO_ROOT_FILES[repo]
        files = sorted(
            (self.path / HISTORY).glob(f"*.{stem}"), key=lambda p: int(p.name.split(".")[0])
        )
        return [f.read_bytes() for f in files] or [self.root_bytes(repo)]

    # -- rotation and revocation ----------------------------------------------------------------
    def rotate(self, role: str) -> list[str]:
        """Replace every key of ``role`` with a fresh one; return the new key ids."""
        if role not in ALL_ROLES:
            raise KeystoreError(f"unknown role {role!r}; roles are {', '.join(ALL_ROLES)}")
        old = self.keyids(role)
        new = [_write_new_key(self.path, role) for _ in old]
        self._replace_keys(role, remove=old, add=new)
        return new

    def revoke(self, keyid: str) -> list[str]:
        """Remove one key from its role; add a fresh key if the role would fall below its threshold."""
        role = self.role_of(keyid)
        full = next(k for k in self.keyids(role) if k == keyid or k.startswith(keyid))
        remaining = len(self.keyids(role)) - 1
        add = [_write_new_key(self.path, role)] if remaining < self.threshold(role) else []
        self._replace_keys(role, remove=[full], add=add)
        return add

    def _replace_keys(self, role: str, remove: list[str], add: list[str]) -> None:
        # The new root must carry the old root's threshold of signatures (so
        # vehicles trusting the old root accept it) and its own.
        old_signers = self.signers("root")
        keep = [k for k in self.keyids(role) if k not in remove]
        self._index[role] = keep + add
        _write_index(self.path, self._index, self._thresholds, self.expiries)
        new_signers = self.signers("root") if role == "root" else []
        for repo, mapping in REPO_ROLES.items():
            tuf_roles = [t for t, k in mapping.items() if k == role]
            if not tuf_roles:
                continue
            md = Metadata[Root].from_bytes(self.root_bytes(repo))
            for tuf_role in tuf_roles:
                for keyid in remove:
                    if keyid in md.signed.roles[tuf_role].keyids:
                        md.signed.revoke_key(keyid, tuf_role)
                for keyid in add:
                    md.signed.add_key(self.public_key(keyid), tuf_role)
            md.signed.version += 1
            md.signed.expires = utcnow() + self.expiries.root
            md.signatures.clear()
            for signer in {s.public_key.keyid: s for s in [*old_signers, *new_signers]}.values():
                md.sign(signer, append=True)
            self._store_root(repo, md)
        for keyid in remove:
            self._key_file(role, keyid, ".pem").unlink(
                missing_ok=True
            )  # a revoked private key is useless; drop it
        log.info("%s: removed %s, added %s", role, [k[:12] for k in remove], [k[:12] for k in add])

    def _store_root(self, repo: str, md: Metadata[Root]) -> None:
        data = md.to_bytes(_PRETTY)
        (self.path / HISTORY).mkdir(exist_ok=True)
        atomic_write_bytes(
            self.path / HISTORY / f"{md.signed.version}.{REPO_ROOT_FILES[repo]}", data
        )
        atomic_write_bytes(self.path / REPO_ROOT_FILES[repo], data)

    # -- the online copy ----------------------------------------------------------------------
    def export_online(self, dest: Path) -> Keystore:
        """Copy the keystore to ``dest`` without the offline (root, targets) private keys."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / HISTORY).mkdir(exist_ok=True)
        for f in self.path.glob("*.json"):
            shutil.copy2(f, dest / f.name)
        for f in (self.path / HISTORY).glob("*.json"):
            shutil.copy2(f, dest / HISTORY / f.name)
        for role in ALL_ROLES:
            for keyid in self.keyids(role):
                pem = self._key_file(role, keyid, ".pem")
                target = dest / pem.name
                if role in ONLINE_ROLES and pem.exists():
                    atomic_write_bytes(target, pem.read_bytes(), mode=0o600)
                else:
                    target.unlink(missing_ok=True)
        return Keystore(dest)


def _write_new_key(path: Path, role: str) -> str:
    signer = CryptoSigner.generate_ed25519()
    keyid = signer.public_key.keyid
    atomic_write_bytes(path / f"{role}-{keyid[:12]}.pem", signer.private_bytes, mode=0o600)
    atomic_write_text(
        path / f"{role}-{keyid[:12]}.pub.json", json.dumps(signer.public_key.to_dict(), indent=1)
    )
    return keyid


def _write_index(
    path: Path, index: dict[str, list[str]], thresholds: dict[str, int], expiries: Expiries
) -> None:
    atomic_write_text(
        path / KEYS_INDEX,
        json.dumps(
            {"roles": index, "thresholds": thresholds, "expiries": expiries.to_dict()}, indent=1
        ),
    )
