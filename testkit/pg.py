"""PostgreSQL for tests and benches: the default server, one schema per test."""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def with_schema(dsn: str, schema: str) -> str:
    """The DSN with ``search_path`` set to ``schema`` (URL form, so the CLI accepts it)."""
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-c search_path={schema}')}"
