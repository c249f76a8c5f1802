"""Errors a person can act on: one line naming the cause and the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from otawire import tls

OTA = [sys.executable, "-m", "ota"]


def ota(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*OTA, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def two_pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ours, other = tmp_path_factory.mktemp("pki"), tmp_path_factory.mktemp("other-pki")
    for p in (ours, other):
        tls.make_ca(p)
        tls.issue(p, "publisher", "ml-team")
        tls.issue(p, "vehicle", "car-1")
    return ours, other


def test_every_option_names_its_environment_variable() -> None:
    from ota.cli import cli

    missing = []

    def walk(cmd: click.Command, ctx: click.Context) -> None:
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.is_eager:
                record = p.get_help_record(ctx)
                if record and "Env:" not in record[1] and "env var:" not in record[1]:
                    missing.append(f"{ctx.command_path} {p.opts[0]}")
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                walk(sub, click.Context(sub, info_name=name, parent=ctx))

    walk(cli, click.Context(cli, info_name="ota", auto_envvar_prefix="OTA"))
    assert not missing, f"options whose --help does not name an env var: {missing}"


def test_agent_vehicle_id_comes_from_its_certificate(two_pkis, tmp_path: Path) -> None:
    pki, _ = two_pkis
    veh = tls.TlsFiles.in_dir(pki, "vehicle", "car-1")
    pub = tls.TlsFiles.in_dir(pki, "publisher", "ml-team")
    base = ["agent", "run", "--state", str(tmp_path / "s"), "--once", "--ca", str(veh.ca)]
    one_line_error(
        ota(*base, "--cert", str(veh.cert), "--key", str(veh.key), "--vehicle-id", "car-2"),
        "'car-2' differs from the name in",
        "'car-1'",
    )
    one_line_error(
        ota(*base, "--cert", str(pub.cert), "--key", str(pub.key)),
        "publisher certificate",
        "ota certs vehicle",
    )
    one_line_error(
        ota(*base, "--cert", str(veh.cert), "--key", str(veh.key), "--tag", "fleet"),
        "'fleet' is not KEY=VALUE",
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_agent_read_only_state_fails_before_the_network(two_pkis, tmp_path: Path) -> None:
    pki, _ = two_pkis
    veh = tls.TlsFiles.in_dir(pki, "vehicle", "car-1")
    ro = tmp_path / "ro"
    ro.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = ota(
            "agent",
            "run",
            "--state",
            str(ro / "car"),
            "--once",
            "--registry",
            "127.0.0.1:1",
            "--ca",
            str(veh.ca),
            "--cert",
            str(veh.cert),
            "--key",
            str(veh.key),
        )
        one_line_error(proc, str(ro / "car"), "not writable", "Read-only file system")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize(
    "case, needles",
    [
        ("key of another certificate", ("is not the key of --cert",)),
        ("not PEM", ("is not a PEM file",)),
        ("certificate from another CA", ("is not issued by --ca", "another fleet's CA")),
    ],
)
def test_bad_tls_files_are_named(
    two_pkis, tmp_path: Path, case: str, needles: tuple[str, ...]
) -> None:
    pki, other = two_pkis
    pub, veh = (
        tls.TlsFiles.in_dir(pki, "publisher", "ml-team"),
        tls.TlsFiles.in_dir(pki, "vehicle", "car-1"),
    )
    ca, cert, key = pub.ca, pub.cert, pub.key
    if case == "key of another certificate":
        key = veh.key
    elif case == "not PEM":
        cert = tmp_path / "cert.der"
        cert.write_bytes(b"\x30\x82garbage")
    else:
        cert, key = (
            tls.TlsFiles.in_dir(other, "publisher", "ml-team").cert,
            tls.TlsFiles.in_dir(other, "publisher", "ml-team").key,
        )
    one_line_error(
        ota(
            "models",
            "--registry",
            "127.0.0.1:1",
            "--ca",
            str(ca),
            "--cert",
            str(cert),
            "--key",
            str(key),
        ),
        *needles,
    )


def test_grpc_core_logs_stay_out_of_the_terminal() -> None:
    from ota.cli import quiet_grpc_core

    for argv, expected in (
        (["models"], "NONE"),
        (["-v", "models"], "NONE"),
        (["-vv", "models"], "ERROR"),
        (["-v", "-v", "models"], "ERROR"),
        (["models", "-vv"], "NONE"),
    ):
        os.environ.pop("GRPC_VERBOSITY", None)
        quiet_grpc_core(argv)
        assert os.environ.pop("GRPC_VERBOSITY") == expected, argv
    os.environ["GRPC_VERBOSITY"] = "DEBUG"  # the user asked for it: left alone
    quiet_grpc_core(["models"])
    assert os.environ.pop("GRPC_VERBOSITY") == "DEBUG"
