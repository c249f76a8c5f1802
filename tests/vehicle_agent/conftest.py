"""Fixtures for agent tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock() -> Iterator[Path]:
    """A Unix socket path in a fresh short directory (sun_path is limited to 107 characters)."""
    d = Path(tempfile.mkdtemp(prefix="ota-", dir="/tmp"))
    yield d / "agent.sock"
    shutil.rmtree(d, ignore_errors=True)
