"""The connection and transaction helpers every part of the SQLite store shares."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SqliteBase:
    """One connection (autocommit; explicit ``BEGIN IMMEDIATE`` transactions) behind a lock."""

    _db: sqlite3.Connection
    _lock: threading.RLock

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
