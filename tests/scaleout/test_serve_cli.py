"""`ota registry serve` refuses a storage choice it cannot honour, saying why."""

from __future__ import annotations

from click.testing import CliRunner

from server.registry_cli import registry


def test_serve_needs_a_data_dir_or_a_database(keys_dir) -> None:
    result = CliRunner().invoke(registry, ["serve", "--keys", str(keys_dir), "--insecure"])
    assert result.exit_code != 0
    assert "give --data DIR (embedded SQLite) or --db postgresql://" in result.output


def test_serve_refuses_a_database_url_it_does_not_speak(keys_dir) -> None:
    result = CliRunner().invoke(
        registry, ["serve", "--keys", str(keys_dir), "--insecure", "--db", "mysql://db/ota"]
    )
    assert result.exit_code != 0
    assert "only postgresql://… URLs are supported" in result.output
