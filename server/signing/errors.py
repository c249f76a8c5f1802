"""Why signing or accepting TUF metadata failed (turned into ``Unsigned`` at the registry's edge)."""

from __future__ import annotations


class KeystoreError(Exception):
    """The keystore is missing, incomplete, unreadable, or cannot sign what was asked."""


class TufError(Exception):
    """Metadata was refused or cannot be produced; the message says why."""
