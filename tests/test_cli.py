"""The `ota` command line as a user runs it: real processes, real ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

OTA = [sys.executable, "-m", "ota"]


def ota(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run([*OTA, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ota {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def creds(tmp: Path, who: str) -> list[str]:
    """--ca/--cert/--key for ``who`` ("server", "publishers/ml-team", "vehicles/car-1") in the test PKI."""
    pki = tmp / "pki"
    return [
        "--ca",
        str(pki / "ca.pem"),
        "--cert",
        str(pki / f"{who}.pem"),
        "--key",
        str(pki / f"{who}.key"),
    ]


@pytest.fixture
def served_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A registry process with online keys only, mutual TLS and the director."""
    ota("keys", "init", "--keys", str(tmp_path / "keys"))
    ota("keys", "online", "--keys", str(tmp_path / "keys"), "--out", str(tmp_path / "online"))
    ota("certs", "init", "--pki", str(tmp_path / "pki"))
    ota("certs", "publisher", "ml-team", "--pki", str(tmp_path / "pki"))
    ota("certs", "vehicle", "car-1", "--pki", str(tmp_path / "pki"))
    proc = subprocess.Popen(
        [
            *OTA,
            "registry",
            "serve",
            "--data",
            str(tmp_path / "data"),
            "--keys",
            str(tmp_path / "online"),
            "--listen",
            "127.0.0.1:0",
            *creds(tmp_path, "server"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"serving on (\S+:\d+)", line)
        assert m, f"registry did not start: {line}"
        yield m.group(1), tmp_path
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, "registry did not stop cleanly on SIGTERM"


def test_help_lists_the_roles() -> None:
    out = ota("--help").stdout
    for cmd in (
        "demo",
        "registry",
        "publish",
        "agent",
        "zoo",
        "classify",
        "keys",
        "certs",
        "director",
    ):
        assert re.search(rf"^\s+{cmd}\s", out, re.M), f"{cmd} missing from ota --help"


def test_publish_and_update_a_vehicle_with_the_cli(served_registry) -> None:
    address, tmp = served_registry
    model = tmp / "squeezenet1.0.onnx"
    pub = creds(tmp, "publishers/ml-team")
    ota("zoo", "build", "squeezenet1.0", "-o", str(model))
    unsigned = ota(
        "publish",
        str(model),
        "--name",
        "squeezenet1.0",
        "--version",
        "1.0.0",
        "--registry",
        address,
        *pub,
        check=False,
    )
    assert (
        unsigned.returncode != 0 and "targets key is offline" in unsigned.stderr
    )  # the registry cannot sign
    out = ota(
        "publish",
        str(model),
        "--name",
        "squeezenet1.0",
        "--version",
        "1.0.0",
        "--registry",
        address,
        "--keys",
        str(tmp / "keys"),
        *pub,
    ).stdout
    assert "published squeezenet1.0 1.0.0" in out
    assert "1.0.0" in ota("models", "--registry", address, *pub).stdout
    released = ota(
        "release", "squeezenet1.0", "1.0.0", "--vehicle", "car-1", "--registry", address, *pub
    ).stdout
    assert "released squeezenet1.0 1.0.0 to vehicle car-1" in released

    car = [
        "--registry",
        address,
        "--state",
        str(tmp / "car"),
        "--vehicle-id",
        "car-1",
        "--once",
        *creds(tmp, "vehicles/car-1"),
    ]
    run = ota(
        "agent",
        "run",
        *car,
        "--trusted-root",
        str(tmp / "keys" / "root.json"),
        "--director-root",
        str(tmp / "keys" / "director-root.json"),
    )
    assert "installed 1.0.0" in run.stdout
    status = ota("agent", "status", "--state", str(tmp / "car"), "--json").stdout
    assert '"active": "a"' in status and '"version": "1.0.0"' in status
    again = ota("agent", "run", *car)
    assert "up to date: squeezenet1.0 1.0.0" in again.stdout
    # A vehicle certificate does not open the publisher API.
    refused = ota("models", "--registry", address, *creds(tmp, "vehicles/car-1"), check=False)
    assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stderr


def test_plain_text_only_with_insecure(served_registry) -> None:
    address, tmp = served_registry
    proc = ota("models", "--registry", address, check=False)
    assert proc.returncode != 0 and "--insecure" in proc.stderr and "Traceback" not in proc.stderr
    proc = ota(
        "registry",
        "serve",
        "--data",
        str(tmp / "d2"),
        "--keys",
        str(tmp / "online"),
        "--listen",
        "127.0.0.1:0",
        check=False,
    )
    assert proc.returncode != 0 and "--insecure" in proc.stderr and "Traceback" not in proc.stderr
    # A plain-text client cannot talk to the TLS registry even when it asks for --insecure.
    proc = ota("models", "--registry", address, "--insecure", check=False, timeout=60)
    assert proc.returncode != 0 and "speaks TLS" in proc.stderr and "drop --insecure" in proc.stderr


def test_publishing_a_non_onnx_file_fails_clearly(served_registry) -> None:
    address, tmp = served_registry
    junk = tmp / "model.onnx"
    junk.write_bytes(b"\x00\x01 this is not a model")
    proc = ota(
        "publish",
        str(junk),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--registry",
        address,
        *creds(tmp, "publishers/ml-team"),
        check=False,
    )
    assert proc.returncode != 0
    assert "not an ONNX model" in proc.stderr and "Traceback" not in proc.stderr


def test_agent_without_trust_anchor_says_what_to_do(tmp_path: Path) -> None:
    proc = ota(
        "agent",
        "run",
        "--registry",
        "127.0.0.1:1",
        "--state",
        str(tmp_path / "s"),
        "--once",
        "--insecure",
        check=False,
    )
    assert (
        proc.returncode != 0 and "--trusted-root" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_demo_runs_end_to_end_and_reports_measured_figures(tmp_path: Path) -> None:
    out = ota("demo", "--workdir", str(tmp_path)).stdout
    assert "Egyptian cat" in out and "espresso" in out
    assert "demo passed" in out
    assert re.search(r"∅ → 1\.0\.0 .*[\d,]+ B", out) and re.search(r"1\.0\.0 → 1\.0\.1", out)
