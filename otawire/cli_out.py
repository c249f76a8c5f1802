"""Where ``ota`` commands print tables: the terminal's width, or no limit when piped.

Rich wraps and truncates a table to 80 columns when stdout is not a terminal,
which cuts ids in half for ``ota campaign list | grep``; piped output keeps
every cell whole instead. Every command prints its tables and reports through
``table_console`` (``tests/operator/test_piped_tables.py`` holds them to it);
it imports nothing of ours, so every package may use it.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 10_000


def table_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr), made when the command prints (so it sees the real terminal)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPED_WIDTH, soft_wrap=False)
