"""What a schema migration is, for both backends (``sqlite_schema.py``, ``postgres_schema.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from server.storage.ports import StorageError


class SchemaError(StorageError):
    """The database schema cannot be brought to the version this code needs."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL split into statements (for drivers that run one at a time)."""
        return [s.strip() for s in self.sql.split(";") if s.strip()]
