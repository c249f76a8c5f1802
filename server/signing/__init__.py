"""TUF metadata: the keystore, signing targets, and the signed repositories the registry serves.

- ``keys.py``: ed25519 keys per role, thresholds, both roots (``ota keys``);
- ``expiry.py``: how long each role's metadata stays valid;
- ``targets.py``: the image targets as the publisher signs them (release counters);
- ``repository.py``: the image repository and the director's per-vehicle chains,
  kept in the metadata store (``TufMetadataStore`` / ``DirectorStore`` ports).
"""
