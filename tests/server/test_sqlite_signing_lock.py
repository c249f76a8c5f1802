"""The SQLite store's signing lock holds across processes (`registry serve --workers N`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from server.storage.sqlite import SqliteMetadataStore

CHILD = """
import sys, time
from server.storage.sqlite import SqliteMetadataStore
store = SqliteMetadataStore(sys.argv[1])
print("trying", flush=True)
with store.signing_lock():
    print(time.time(), flush=True)
store.close()
"""


def test_a_second_process_waits_for_the_signer(tmp_path: Path) -> None:
    # Two workers signing at once both wrote root version 1 and one died ("TUF root version 1
    # already exists"): the lock must keep a second process out until the first lets go.
    db = tmp_path / "registry.db"
    store = SqliteMetadataStore(db)
    with store.signing_lock(), store.signing_lock():  # re-entrant in one process
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "trying"
        time.sleep(0.5)  # time for the child to take the lock, were it free
        released_at = time.time()
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert float(out.strip()) >= released_at
    with store.signing_lock():  # and it is free again for this process
        pass
    store.close()
