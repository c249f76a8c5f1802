"""Tables piped into another program (`| cat`, `| grep`, a log) keep every cell whole.

Rich fits a table to 80 columns when its stream is not a terminal, cutting ids and file
names into "…"; every command prints through ``otawire.cli_out.table_console`` instead.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from tests.operator.test_cli_errors import OTA

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("ota", "server", "modelpack", "simulator", "vehicle_agent", "otawire")


def _piped(*args: str, cwd: Path) -> str:
    """``ota ARGS 2>&1 | cat``: both streams into a pipe, no COLUMNS to lean on."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("COLUMNS", "LINES")}
    out = subprocess.run(
        [*OTA, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout
    return out.stdout


def test_piped_tables_are_not_cut(tmp_path: Path) -> None:
    lineage = _piped("zoo", "lineage", "--out", str(tmp_path / "lineage"), cwd=tmp_path)
    for name in (
        "squeezenet1.0.onnx",
        "squeezenet1.0-head.onnx",
        "squeezenet1.0-int8.onnx",
        "squeezenet1.0-cb6.onnx",
        "confident top-1",
        "5,003,953",
    ):
        assert name in lineage, lineage
    zoo = _piped("zoo", "list", cwd=tmp_path)
    keys = _piped("keys", "init", "--keys", str(tmp_path / "keys"), cwd=tmp_path)
    for out in (lineage, zoo, keys):
        assert "…" not in out, out
    assert any(len(line) > 80 for line in zoo.splitlines()), "zoo list fits no 80 columns"


def test_every_console_for_output_is_a_table_console() -> None:
    """A ``Console()`` of its own (stdout, or a fixed width) would cut piped tables again;
    only stderr consoles for progress bars and status lines may be made directly."""
    offenders = []
    for root in PRODUCT:
        for path in sorted((REPO / root).rglob("*.py")):
            if path.relative_to(REPO).as_posix() == "otawire/cli_out.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Console"
                ):
                    kw = {k.arg: k.value for k in node.keywords}
                    stderr = kw.get("stderr")
                    if not (isinstance(stderr, ast.Constant) and stderr.value is True) or (
                        "width" in kw
                    ):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == [], f"print tables through otawire.cli_out.table_console: {offenders}"
