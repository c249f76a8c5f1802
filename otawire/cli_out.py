"""Where ``ota`` commands print tables: the terminal's width, or no limit when piped.

Rich wraps and truncates a table to 80 columns when stdout is not a terminal,
which cuts ids in half for ``ota campaign list | grep``; piped output keeps
every cell whole instead.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 10_000


def table_console() -> Console:
    """A console for stdout, made when the command prints (so it sees the real terminal)."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH, soft_wrap=False)
