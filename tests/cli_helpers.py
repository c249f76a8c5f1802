"""Running the real `ota` CLI in-process against a test registry (tests only: it imports ``ota``)."""

from __future__ import annotations


def publisher_args(server) -> list[str]:
    """``--registry ADDR --ca … --cert … --key …`` for ``ota`` commands as the test publisher."""
    files = server.publisher_tls
    return [
        "--registry",
        server.address,
        "--ca",
        str(files.ca),
        "--cert",
        str(files.cert),
        "--key",
        str(files.key),
    ]


def ota_cli(*args: str, ok: bool = True) -> str:
    """Run ``ota ARGS`` in-process (the real CLI code); return its output (stdout and stderr).

    ``ok=False`` expects a refusal: a non-zero exit with a one-line error, never a traceback.
    """
    from click.testing import CliRunner

    from ota.cli import cli

    res = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    out = res.output + (
        res.stderr if res.stderr_bytes is not None and res.stderr not in res.output else ""
    )
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(
            f"ota {' '.join(args)} raised {res.exception!r}:\n{out}"
        ) from res.exception
    if ok:
        assert res.exit_code == 0, f"ota {' '.join(args)} failed ({res.exit_code}):\n{out}"
    else:
        assert res.exit_code != 0, f"ota {' '.join(args)} was expected to fail:\n{out}"
        errors = [line for line in out.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in out, f"not a one-line error:\n{out}"
    return out
