"""The PostgreSQL connection pool every part of the PostgreSQL store shares.

Needs the ``pg`` extra (psycopg 3 and its pool); importing this module without
it raises an ImportError that says how to install it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as e:  # the embedded default (SQLite) must not need it
    raise ImportError(
        f"the PostgreSQL backend needs psycopg 3 ({e}); install it with: pip install 'squeeze-ota[pg]'"
    ) from None

from server.storage.ports import StorageError
from server.storage.postgres_schema import migrate


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items()))


class PgDatabase:
    """A connection pool plus a per-thread pinned transaction for locked sections."""

    def __init__(
        self, dsn: str, max_connections: int = 20, connect_timeout_s: float = 10.0
    ) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            open=False,
            name="ota-registry",
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as e:
            self.pool.close()
            raise StorageError(
                f"cannot connect to PostgreSQL ({redact(dsn)}) within {connect_timeout_s:.0f} s: {e}"
            ) from None
        try:
            with self.pool.connection() as conn:
                migrate(conn)
                self.schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        except BaseException:
            self.pool.close()  # no pool threads left behind by a registry that will not start
            raise

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        """The thread's pinned connection inside ``locked``, else one from the pool."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.pool.connection() as c:
            yield c

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection]:
        """A transaction (a savepoint when nested in ``locked``)."""
        with self.conn() as c, c.transaction():
            yield c

    @contextmanager
    def locked(self, lock_class: int, scope: str = "") -> Iterator[None]:
        """Hold an advisory lock on (schema, ``scope``) for the block, in one transaction.

        Re-entrant within a thread; a nested block with another scope takes that
        lock too, in the same transaction. Everything the thread's store calls
        write in the outermost block commits at its end, atomically, or rolls
        back on an exception.
        """
        key = (lock_class, scope)
        held: set | None = getattr(self._local, "held", None)
        if held is not None:  # nested in a locked block of this thread
            if key not in held:
                self._advisory(self._local.conn, lock_class, scope)
                held.add(key)  # held until the outermost transaction ends
            yield
            return
        with self.pool.connection() as c, c.transaction():
            self._advisory(c, lock_class, scope)
            self._local.conn, self._local.held = c, {key}
            try:
                yield
            finally:
                self._local.conn, self._local.held = None, None

    @staticmethod
    def _advisory(c: psycopg.Connection, lock_class: int, scope: str) -> None:
        c.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() || ':' || %s))",
            (lock_class, scope),
        )
